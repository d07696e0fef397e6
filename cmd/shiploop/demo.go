package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

const demoConfig = `# A sample pipeline: three steps, the last one depends on the first two.
env:
  GREETING: hello
steps:
  - name: lint
    commands:
      - echo "$GREETING from $SHIPLOOP_REPOSITORY at version $SHIPLOOP_VERSION"
      - test -f main.txt
  - name: build
    commands:
      - mkdir -p dist
      - cp main.txt dist/
      - ls -l dist
  - name: package
    depends_on: [lint, build]
    commands:
      - tar czf dist.tar.gz dist
      - echo "packaged $(wc -c < dist.tar.gz) bytes"
`

func demoCommand() *command {
	var o clientOptions
	var httpURL, dir, name string
	c := newCommand("demo", "shiploop demo [flags]", "Create a sample git repository, register it and push it: watch the push become a build.",
		`Needs a running 'shiploop up' and git. The repository is made in --dir (a new temporary
directory by default); the push is a signed GitHub webhook sent to --http.`)
	clientFlags(c, &o)
	c.flags.StringVar(&httpURL, "http", "http://127.0.0.1:8080", "shiploop's HTTP URL (webhooks)")
	c.flags.StringVar(&dir, "dir", "", "where to create the sample repository")
	c.flags.StringVar(&name, "name", "demo/hello", "repository name")
	c.run = func(c *command, args []string) error {
		if _, err := exec.LookPath("git"); err != nil {
			return fmt.Errorf("the demo needs git on PATH: %w", err)
		}
		if dir == "" {
			d, err := os.MkdirTemp("", "shiploop-demo-")
			if err != nil {
				return err
			}
			dir = d
		}
		sha, err := makeDemoRepo(dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "created %s with a .shiploop.yml (commit %s)\n", dir, short(sha))
		cl, closeFn, err := o.dial()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 2*time.Minute)
		defer cancel()
		reg, err := cl.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: name, CloneUrl: dir, DefaultBranch: "main"})
		if err != nil {
			return fmt.Errorf("registering %s at %s: %w (is `shiploop up` running?)", name, o.server, err)
		}
		fmt.Fprintf(c.stdout, "registered %s; webhook secret %s\n", name, reg.GetWebhookSecret())
		watch, err := cl.WatchEvents(ctx, &buildsv1.WatchEventsRequest{Repository: name})
		if err != nil {
			return err
		}
		if _, err := watch.Header(); err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]any{
			"ref": "refs/heads/main", "before": strings.Repeat("0", 40), "after": sha,
			"repository": map[string]any{"full_name": name, "clone_url": dir, "default_branch": "main"},
			"pusher":     map[string]any{"name": "demo"}, "sender": map[string]any{"login": "demo"},
			"head_commit": map[string]any{"id": sha, "message": "demo commit"},
			"commits":     []any{map[string]any{"id": sha, "message": "demo commit", "added": []string{".shiploop.yml", "main.txt"}}},
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(httpURL, "/")+"/hooks/github", bytes.NewReader(body))
		mac := hmac.New(sha256.New, []byte(reg.GetWebhookSecret()))
		mac.Write(body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("demo-%d", time.Now().UnixNano()))
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("sending the webhook to %s: %w (set --http)", httpURL, err)
		}
		resp.Body.Close()
		fmt.Fprintf(c.stdout, "pushed: POST %s/hooks/github -> %s\n\n", httpURL, resp.Status)
		for {
			r, err := watch.Recv()
			if err != nil {
				return fmt.Errorf("waiting for the build: %w", err)
			}
			ev := r.GetEvent()
			fmt.Fprintln(c.stdout, formatEvent(ev))
			if ev.GetType() == "dev.shiploop.build.finished.v1" {
				var bf eventsv1.BuildFinished
				if err := ev.GetData().UnmarshalTo(&bf); err == nil {
					fmt.Fprintf(c.stdout, "\nbuild %s#%d %s. See it with: shiploop builds get %s#%d\n", name, bf.GetNumber(), statusWord(bf.GetStatus()), name, bf.GetNumber())
				}
				return nil
			}
		}
	}
	return c
}

func makeDemoRepo(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	files := map[string]string{".shiploop.yml": demoConfig, "main.txt": "hello from shiploop\n"}
	for n, content := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	env := append(os.Environ(), "GIT_AUTHOR_NAME=shiploop demo", "GIT_AUTHOR_EMAIL=demo@shiploop.invalid",
		"GIT_COMMITTER_NAME=shiploop demo", "GIT_COMMITTER_EMAIL=demo@shiploop.invalid")
	for _, args := range [][]string{
		{"init", "--quiet", "--initial-branch=main"},
		{"add", "."},
		{"commit", "--quiet", "-m", "demo commit"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git %s: %v: %s", args[0], err, out)
		}
	}
	cmd := exec.Command("git", "rev-parse", "HEAD")
	cmd.Dir = dir
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}
