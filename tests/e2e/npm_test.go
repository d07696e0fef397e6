package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// npmInstall installs a package.json's dependencies into dir with npm: from
// SHIPLOOP_NPM_CACHE when set (.ci/run fills it), each attempt bounded (a
// hung install once held CI for 15 minutes) and tried 3 times. Without npm,
// or when every attempt fails, the test skips, except under CI=true, where
// it fails naming what is missing.
func npmInstall(t *testing.T, dir, what string) {
	t.Helper()
	need := func(format string, a ...any) {
		t.Helper()
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf(format+" (CI=true: .ci/run must provide npm and %s)", append(a, what)...)
		}
		t.Skipf(format, a...)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		need("npm is not installed: this test installs %s with it", what)
	}
	var installErr error
	var out []byte
	for attempt := 1; attempt <= 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		install := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefer-offline", "--fetch-timeout=60000", "--fetch-retries=2")
		install.Dir = dir
		install.WaitDelay = 5 * time.Second
		if cache := os.Getenv("SHIPLOOP_NPM_CACHE"); cache != "" {
			install.Env = append(os.Environ(), "npm_config_cache="+cache)
		}
		out, installErr = install.CombinedOutput()
		cancel()
		if installErr == nil {
			return
		}
		t.Logf("npm install %s, attempt %d of 3: %v\n%s", what, attempt, installErr, out)
	}
	need("npm install %s failed 3 times: %v\n%s", what, installErr, out)
}

// npmPackageDir writes a package.json depending on pkg@version into a new
// directory and installs it (npmInstall).
func npmPackageDir(t *testing.T, pkg, version string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"shiploop-e2e","private":true,"dependencies":{"`+pkg+`":"`+version+`"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	npmInstall(t, dir, pkg)
	return dir
}
