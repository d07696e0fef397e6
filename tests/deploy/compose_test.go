// Package deploy checks the deployment files without a container engine:
// the compose file parses and every container's command is one the shiploop
// binary accepts.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		DependsOn   map[string]any    `yaml:"depends_on"`
	} `yaml:"services"`
}

func TestComposeCommandsAreAccepted(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "shiploop")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/shiploop/shiploop/cmd/shiploop").CombinedOutput(); err != nil {
		t.Fatalf("building shiploop: %v\n%s", err, out)
	}
	shiploopServices := 0
	for name, svc := range cf.Services {
		for dep := range svc.DependsOn {
			if _, ok := cf.Services[dep]; !ok {
				t.Errorf("service %s depends on %s, which the file does not define", name, dep)
			}
		}
		if !strings.HasPrefix(svc.Image, "shiploop") {
			continue
		}
		shiploopServices++
		if len(svc.Command) == 0 || !slices.Contains([]string{"serve", "agent"}, svc.Command[0]) {
			t.Errorf("service %s: command %q is not `shiploop serve` or `shiploop agent`", name, svc.Command)
			continue
		}
		// Run the command as the container would, but only as far as checking it.
		args := append([]string{svc.Command[0], "--dry-run"}, svc.Command[1:]...)
		cmd := exec.Command(bin, args...)
		cmd.Env = os.Environ()
		for k, v := range svc.Environment {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("service %s: shiploop %s rejects its command: %v\n%s", name, strings.Join(args, " "), err, out)
			continue
		}
		if !strings.HasPrefix(string(out), "would ") {
			t.Errorf("service %s: unexpected dry-run output %q", name, out)
		}
	}
	if shiploopServices < 2 {
		t.Errorf("found %d shiploop services in docker-compose.yml, want the builds service and agents", shiploopServices)
	}
}

// TestDryRunRejectsUnknownService proves the check above can fail.
func TestDryRunRejectsUnknownService(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "shiploop")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/shiploop/shiploop/cmd/shiploop").CombinedOutput(); err != nil {
		t.Fatalf("building shiploop: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "serve", "--dry-run", "--nats-url", "nats://x:4222", "bulids").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown service "bulids"`) {
		t.Errorf("serve bulids: err %v, output %q; want a rejection naming the service", err, out)
	}
}
