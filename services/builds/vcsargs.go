package builds

import (
	"fmt"
	"strings"

	"github.com/shiploop/shiploop/pkg/vcsarg"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// checkChangeArgs refuses a change whose commit ids or ref names could not
// be what they claim: every one of them later reaches git or hg as an
// argument (after --end-of-options or --, so never as an option), and a
// value that is no commit id or ref name is refused here with the field
// that held it, before anything is recorded.
func checkChangeArgs(vcs string, ch *eventsv1.Change) error {
	for _, f := range []struct{ name, v string }{{"after", ch.After}, {"before", ch.Before}, {"base_sha", ch.BaseSha}} {
		if f.v == "" || strings.Trim(f.v, "0") == "" {
			continue // none, or all zeros: a ref created or deleted
		}
		if err := vcsarg.CommitOrPrefix(f.v); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	names := []struct{ name, v string }{{"ref", ch.Ref}, {"base_ref", ch.BaseRef}, {"branch", ch.Branch}, {"tag", ch.Tag}}
	for _, f := range names {
		if f.v == "" {
			continue
		}
		check := vcsarg.Ref
		if vcs == VCSHg {
			check = vcsarg.HgName
		}
		if err := check(f.v); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}
