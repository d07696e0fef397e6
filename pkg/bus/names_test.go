package bus_test

import (
	"testing"

	"github.com/shiploop/shiploop/pkg/bus"
)

func TestRepoToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		repo, want string
	}{
		{"", "_"},
		{"acme/web", "acme_web"},
		{"Acme/Web.Shop", "acme_web_shop"},
		{"my-org/repo_1", "my-org_repo_1"},
		{"a b\tc", "a_b_c"},
		{"wild*card>and.dots", "wild_card_and_dots"},
		// One "_" per character, not per UTF-8 byte (docs/architecture.md).
		{"café/wëb", "caf__w_b"},
		{"ÜBER/日本", "_ber___"},
	}
	for _, tt := range tests {
		t.Run(tt.repo, func(t *testing.T) {
			if got := bus.RepoToken(tt.repo); got != tt.want {
				t.Errorf("RepoToken(%q) = %q, want %q", tt.repo, got, tt.want)
			}
		})
	}
}

func TestEventFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ, repo, want string
	}{
		{"build.finished", "acme/web", "shiploop.evt.build.finished.acme_web"},
		{"build.finished", "", "shiploop.evt.build.finished.*"},
		{"build.*", "", "shiploop.evt.build.*.*"},
		{"build", "Acme/Web", "shiploop.evt.build.*.acme_web"},
		{"", "", "shiploop.evt.*.*.*"},
		{"*", "acme/web", "shiploop.evt.*.*.acme_web"},
		{">", "", "shiploop.evt.*.*.*"},
		{"dev.shiploop.change.pushed.v1", "", "shiploop.evt.change.pushed.*"},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"|"+tt.repo, func(t *testing.T) {
			if got := bus.EventFilter(tt.typ, tt.repo); got != tt.want {
				t.Errorf("EventFilter(%q, %q) = %q, want %q", tt.typ, tt.repo, got, tt.want)
			}
		})
	}
}

// TestEventFilterMatchesEventSubject checks that a filter built for a type and
// repository selects the subject that type is published on.
func TestEventFilterMatchesEventSubject(t *testing.T) {
	t.Parallel()
	subject := bus.EventSubject("build.finished", "Acme/Web")
	if subject != "shiploop.evt.build.finished.acme_web" {
		t.Fatalf("EventSubject = %q", subject)
	}
	if f := bus.EventFilter("build.finished", "Acme/Web"); f != subject {
		t.Errorf("EventFilter for the same type and repository = %q, want the subject %q", f, subject)
	}
	if got, want := bus.JobSubject("build", "Acme/Web"), "shiploop.job.build.any.acme_web"; got != want {
		t.Errorf("JobSubject = %q, want %q", got, want)
	}
	if got, want := bus.LogSubject("0190abcd"), "shiploop.log.0190abcd"; got != want {
		t.Errorf("LogSubject = %q, want %q", got, want)
	}
}

func TestFullTypeShortType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		short, full string
	}{
		{"build.finished", "dev.shiploop.build.finished.v1"},
		{"change.pr_opened", "dev.shiploop.change.pr_opened.v1"},
		{"job.requested", "dev.shiploop.job.requested.v1"},
	}
	for _, tt := range tests {
		t.Run(tt.short, func(t *testing.T) {
			if got := bus.FullType(tt.short); got != tt.full {
				t.Errorf("FullType(%q) = %q, want %q", tt.short, got, tt.full)
			}
			if got := bus.FullType(tt.full); got != tt.full {
				t.Errorf("FullType(%q) = %q, want it unchanged", tt.full, got)
			}
			if got := bus.ShortType(tt.full); got != tt.short {
				t.Errorf("ShortType(%q) = %q, want %q", tt.full, got, tt.short)
			}
			if got := bus.ShortType(tt.short); got != tt.short {
				t.Errorf("ShortType(%q) = %q, want it unchanged", tt.short, got)
			}
		})
	}
}
