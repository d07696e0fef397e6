package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  string
)

// shiploopBin builds the shiploop binary once for the package's tests;
// SHIPLOOP_BIN names one already built instead.
func shiploopBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if b := os.Getenv("SHIPLOOP_BIN"); b != "" {
			binPath = b
			return
		}
		dir, err := os.MkdirTemp("", "shiploop-deploy-test")
		if err != nil {
			binErr = err.Error()
			return
		}
		binPath = filepath.Join(dir, "shiploop")
		if out, err := exec.Command("go", "build", "-o", binPath, "github.com/shiploop/shiploop/cmd/shiploop").CombinedOutput(); err != nil {
			binErr = "building shiploop: " + err.Error() + "\n" + string(out)
		}
	})
	if binErr != "" {
		t.Fatal(binErr)
	}
	return binPath
}

// servicesOf is the list of services `shiploop serve` accepts, as its
// --help prints it (knownServices in cmd/shiploop), the agent included.
func servicesOf(t *testing.T, bin string) []string {
	t.Helper()
	help, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
	m := regexp.MustCompile(`Services: ([a-z, ]+)\. Each`).FindSubmatch(help)
	if m == nil {
		t.Fatalf("serve --help does not list the services:\n%s", help)
	}
	return strings.Split(string(m[1]), ", ")
}

// natsServerVersion is the github.com/nats-io/nats-server/v2 version
// pkg/go.mod requires: the NATS the code embeds and is tested with.
func natsServerVersion(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../pkg/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/nats-io/nats-server/v2 (v\S+)`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("pkg/go.mod does not require github.com/nats-io/nats-server/v2")
	}
	return string(m[1])
}
