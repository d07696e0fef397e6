// Package testfixture is for tests that read fixtures from outside the
// repository (../shared/testdata) or need a tool on the machine: where the
// fixture or tool is missing they skip on a developer's machine and fail
// under CI=true, where a skip would hide that nothing was checked.
package testfixture

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Missing skips t, or fails it when CI=true, saying what is missing.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: a missing fixture or tool fails the run instead of skipping)", msg)
	}
	t.Skip(msg)
}

// SharedDir finds ../shared/testdata beside the repository root (the
// directory holding go.work) and checks it exists.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			shared := filepath.Join(dir, "..", "shared", "testdata")
			if _, err := os.Stat(shared); err != nil {
				Missing(t, "shared test data not found: %v", err)
			}
			return shared
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			Missing(t, "no go.work above %s: ../shared/testdata is unavailable", dir)
		}
		dir = parent
	}
}
