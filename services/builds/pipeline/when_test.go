package pipeline

import "testing"

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"main", "main", true},
		{"main", "main2", false},
		{"release/*", "release/1.2", true},
		{"release/*", "release/1/2", false},
		{"release/*", "release/", true},
		{"release/**", "release/1/2", true},
		{"v*", "v1.2.3", true},
		{"v*", "1.2.3", false},
		{"src/**", "src/a/b/c.go", true},
		{"src/**", "src", false},
		{"src/**", "srcx/a.go", false},
		{"**/*.go", "a.go", true},
		{"**/*.go", "a/b/c.go", true},
		{"**/*.go", "a/b/c.md", false},
		{"docs/**/*.md", "docs/x.md", true},
		{"docs/**/*.md", "docs/a/b/x.md", true},
		{"*.go", "a/b.go", false},
		{"?.go", "a.go", true},
		{"?.go", "/.go", false},
		{"a.b", "axb", false}, // dots are literal
		{"a+(b)", "a+(b)", true},
		{"[ab]", "a", false}, // brackets are literal
		{"[ab]", "[ab]", true},
		{"**", "anything/at/all", true},
		{"feat-*", "feat-\nx", true},
	} {
		if got := Glob(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestWhenMatch(t *testing.T) {
	push := func(branch string, paths ...string) Context {
		return Context{Event: "push", Branch: branch, ChangedPaths: paths}
	}
	tag := func(name string) Context { return Context{Event: "tag", Tag: name} }
	for _, tc := range []struct {
		name string
		when When
		ctx  Context
		want bool
	}{
		{"zero when matches a push", When{}, push("main"), true},
		{"zero when matches a tag", When{}, tag("v1"), true},
		{"empty lists match anything", When{Event: []string{}, Branch: []string{}, Paths: []string{}}, push("x", "a"), true},
		{"event listed", When{Event: []string{"push", "tag"}}, push("main"), true},
		{"event not listed", When{Event: []string{"tag"}}, push("main"), false},
		{"manual", When{Event: []string{"manual"}}, Context{Event: "manual", Branch: "main"}, true},
		{"branch exact", When{Branch: []string{"main"}}, push("main"), true},
		{"branch other", When{Branch: []string{"main"}}, push("dev"), false},
		{"branch glob", When{Branch: []string{"release/*"}}, push("release/2.0"), true},
		{"branch glob one segment", When{Branch: []string{"release/*"}}, push("release/2.0/fix"), false},
		{"branch excluded", When{Branch: []string{"release/*", "!release/old"}}, push("release/old"), false},
		{"branch only exclusions, other", When{Branch: []string{"!dependabot/**"}}, push("main"), true},
		{"branch only exclusions, excluded", When{Branch: []string{"!dependabot/**"}}, push("dependabot/go/x"), false},
		{"branch list never matches a tag build", When{Branch: []string{"main"}}, tag("v1.0.0"), false},
		{"branch exclusions let a tag build through", When{Branch: []string{"!wip/*"}}, tag("v1.0.0"), true},
		{"tag glob", When{Event: []string{"tag"}, Tag: []string{"v*"}}, tag("v1.2.0"), true},
		{"tag glob other", When{Tag: []string{"v*"}}, tag("nightly"), false},
		{"tag list never matches a push", When{Tag: []string{"v*"}}, push("main"), false},
		{"tag excluded prerelease", When{Tag: []string{"v*", "!v*-rc*"}}, tag("v2.0.0-rc.1"), false},
		{"paths unknown match", When{Paths: []string{"src/**"}}, push("main"), true},
		{"paths one changed file inside", When{Paths: []string{"src/**"}}, push("main", "README.md", "src/a.go"), true},
		{"paths nothing inside", When{Paths: []string{"src/**"}}, push("main", "README.md"), false},
		{"paths excluded only", When{Paths: []string{"!docs/**"}}, push("main", "docs/a.md", "docs/b/c.md"), false},
		{"paths excluded and other", When{Paths: []string{"!docs/**"}}, push("main", "docs/a.md", "main.go"), true},
		{"paths included but excluded", When{Paths: []string{"src/**", "!src/**/*.md"}}, push("main", "src/x/README.md"), false},
		{"every list must match", When{Event: []string{"push"}, Branch: []string{"main"}, Paths: []string{"src/**"}}, push("main", "docs/x"), false},
		{"pull request branch", When{Event: []string{"pull_request"}, Branch: []string{"feature/*"}}, Context{Event: "pull_request", Branch: "feature/x"}, true},
	} {
		if got := tc.when.Match(tc.ctx); got != tc.want {
			t.Errorf("%s: %+v.Match(%+v) = %v, want %v", tc.name, tc.when, tc.ctx, got, tc.want)
		}
	}
}

func TestMatchParsedWhen(t *testing.T) {
	cfg, err := Parse(file, []byte(`when: {event: [push, tag]}
steps:
  build: {commands: make}
  docs: {commands: make docs, when: {paths: ["docs/**"]}}
  release: {commands: make release, when: {event: tag, tag: "v*"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	names := func(steps []Step) []string {
		var out []string
		for _, s := range steps {
			out = append(out, s.Name)
		}
		return out
	}
	for _, tc := range []struct {
		ctx  Context
		want []string
	}{
		{Context{Event: "push", Branch: "main", ChangedPaths: []string{"main.go"}}, []string{"build"}},
		{Context{Event: "push", Branch: "main", ChangedPaths: []string{"docs/a.md"}}, []string{"build", "docs"}},
		{Context{Event: "push", Branch: "main"}, []string{"build", "docs"}},
		{Context{Event: "tag", Tag: "v1.0.0", ChangedPaths: []string{"main.go"}}, []string{"build", "release"}},
		{Context{Event: "pull_request", Branch: "x"}, nil},
	} {
		if got := names(cfg.Selected(tc.ctx)); !equalStrings(got, tc.want) {
			t.Errorf("Selected(%+v) = %v, want %v", tc.ctx, got, tc.want)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
