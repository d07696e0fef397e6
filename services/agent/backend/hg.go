//go:build unix

package backend

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// checkoutHg makes dir a Mercurial working copy of cloneURL at node, in
// one process: `hg clone -r node -u node`, which transfers only node and
// its ancestors (hardlinked for a local source) and updates to it. node
// need not be on a branch head: a draft in a staging repository works.
func checkoutHg(ctx context.Context, dir, cloneURL, node string, env []string) error {
	cloneURL = absLocalPath(cloneURL)
	if strings.HasPrefix(cloneURL, "-") {
		return fmt.Errorf("invalid clone URL %q", redactURL(cloneURL))
	}
	if !isFullSHA(node) {
		return fmt.Errorf("changeset %q is not a full node id", node)
	}
	cmd := hgCommand(ctx, env, "clone", "--quiet", "--noninteractive", "-r", node, "-u", node, "--", cloneURL, dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2048 {
			msg = "…" + msg[len(msg)-2048:]
		}
		return fmt.Errorf("hg clone of changeset %s from %s: %w: %s", node, redactURL(cloneURL), err, msg)
	}
	return nil
}

func hgCommand(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "hg", args...)
	// HGPLAIN: the user's aliases and defaults must not change what runs.
	cmd.Env = append(env, "HGPLAIN=1")
	// hg starts ssh or other helpers for remote URLs; cancel them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd
}
