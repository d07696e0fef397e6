// Services: daemons a job's steps need (a database, a cache), started before
// the steps and stopped after them, like the seed's pifpaf.

package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Service is a long-running process of a job. Its command runs in the
// workspace with the job's environment plus Env, in its own process group.
type Service struct {
	Name    string
	Command string
	Env     map[string]string
	// ReadyTCP is a host:port that must accept a connection before the
	// service counts as ready; empty: ready once started.
	ReadyTCP string
	// ReadyTimeout bounds the wait for ReadyTCP or ReadyCommand (default 60s).
	ReadyTimeout time.Duration
	// Container backends only (docker.go). Image is the image the service
	// runs in, on the job's network with Name as its host name; Command,
	// when set, replaces the image's command (run by /bin/sh -c). Pull is
	// as in Step. ReadyCommand, when set, runs in the service's container
	// (/bin/sh -c) until it exits 0: the service is ready. ReadyTCP's port
	// is then dialled on the container's address.
	Image        string
	Pull         string
	ReadyCommand string
}

// ServiceRunner is what a Backend that can run services also implements.
//
// Contract: StartService returns once the service is ready, with a stop
// function that kills its whole process group (SIGTERM, SIGKILL after the
// grace period) and returns when it is gone. A service that exits or does
// not get ready in time is an error, and nothing of it is left running.
// Output lines go to out with Step "service:<name>".
type ServiceRunner interface {
	StartService(ctx context.Context, ws *Workspace, svc Service, out func(Line)) (stop func() error, err error)
}

var _ ServiceRunner = (*Process)(nil)

// StartService implements ServiceRunner.
func (p *Process) StartService(ctx context.Context, ws *Workspace, svc Service, out func(Line)) (func() error, error) {
	if ws == nil || ws.root == "" {
		return nil, errors.New("backend: StartService needs a workspace made by Prepare")
	}
	name := "service:" + svc.Name
	env, err := p.stepEnv(ws, Step{Name: name, Env: svc.Env})
	if err != nil {
		return nil, fmt.Errorf("backend: service %q: %w", svc.Name, err)
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("backend: service %q: %w", svc.Name, err)
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdoutR.Close()
		stdoutW.Close()
		return nil, fmt.Errorf("backend: service %q: %w", svc.Name, err)
	}
	cmd := exec.Command("/bin/sh", "-c", svc.Command)
	cmd.Dir = ws.Dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdoutR.Close()
		stderrR.Close()
		return nil, fmt.Errorf("backend: service %q: starting /bin/sh: %w", svc.Name, err)
	}
	pgid := cmd.Process.Pid
	var outMu sync.Mutex
	var readers sync.WaitGroup
	read := func(r *os.File, stream string) {
		defer readers.Done()
		defer r.Close()
		scanLines(r, func(text string) {
			if out == nil {
				return
			}
			outMu.Lock()
			defer outMu.Unlock()
			out(Line{Step: name, Stream: stream, Text: cleanText(ws.masker.Mask(text)), Time: time.Now()})
		})
	}
	readers.Add(2)
	go read(stdoutR, Stdout)
	go read(stderrR, Stderr)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var once sync.Once
	var stopErr error
	exited := false
	stop := func() error {
		once.Do(func() {
			if !exited {
				_ = p.stop(pgid, waited)
			}
			stopErr = killGroup(pgid)
			// A daemon's grandchild may hold the pipes; do not wait forever.
			done := make(chan struct{})
			go func() { readers.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(p.grace):
			}
		})
		return stopErr
	}
	if svc.ReadyTCP == "" {
		return stop, nil
	}
	timeout := svc.ReadyTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		d := net.Dialer{Timeout: time.Second}
		conn, err := d.DialContext(ctx, "tcp", svc.ReadyTCP)
		if err == nil {
			conn.Close()
			return stop, nil
		}
		select {
		case werr := <-waited:
			exited = true
			_ = stop()
			return nil, fmt.Errorf("backend: service %q exited before %s accepted connections: %v", svc.Name, svc.ReadyTCP, exitText(werr))
		case <-ctx.Done():
			_ = stop()
			return nil, fmt.Errorf("backend: service %q: %w", svc.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, fmt.Errorf("backend: service %q: %s did not accept connections within %s", svc.Name, svc.ReadyTCP, timeout)
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
