package backend

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestServiceReadyAndStopped: a service that listens is ready once its port
// accepts, serves the steps, and is gone after stop; one that exits early or
// never listens is an error.
func TestServiceReadyAndStopped(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed (the test daemon is a python one-liner)")
	}
	r := newTestRepo(t)
	p := newTestBackend(t, time.Second)
	ws := prepare(t, p, JobSpec{ID: "svc", CloneURL: r.bare, Commit: r.first})
	addr := freePort(t)
	host, port, _ := net.SplitHostPort(addr)
	daemon := `python3 -c 'import socket,time,os
time.sleep(0.3)
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("` + host + `", int(os.environ["PORT"]))); s.listen(8)
print("listening", flush=True)
while True:
    c,_=s.accept(); c.sendall(b"hello\n"); c.close()'`
	var mu sync.Mutex
	var lines []string
	out := func(l Line) { mu.Lock(); lines = append(lines, l.Step+": "+l.Text); mu.Unlock() }
	stop, err := p.StartService(context.Background(), ws, Service{Name: "db", Command: daemon, Env: map[string]string{"PORT": port}, ReadyTCP: addr}, out)
	if err != nil {
		t.Fatal(err)
	}
	o, err := p.RunStep(context.Background(), ws, Step{Name: "use", Commands: []string{`python3 -c 'import socket; s=socket.create_connection(("` + host + `", ` + port + `)); print(s.recv(10).decode().strip())'`}}, out)
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("step using the service: %+v %v %v", o, err, lines)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the service still accepts connections after stop")
	}
	mu.Lock()
	got := strings.Join(lines, "\n")
	mu.Unlock()
	if !strings.Contains(got, "service:db: listening") || !strings.Contains(got, "use: hello") {
		t.Errorf("lines:\n%s", got)
	}

	_, err = p.StartService(context.Background(), ws, Service{Name: "dies", Command: "echo bye; exit 3", ReadyTCP: freePort(t)}, nil)
	if err == nil || !strings.Contains(err.Error(), "exited before") {
		t.Errorf("a service that exits: %v", err)
	}
	_, err = p.StartService(context.Background(), ws, Service{Name: "mute", Command: "exec sleep 30", ReadyTCP: freePort(t), ReadyTimeout: 500 * time.Millisecond}, nil)
	if err == nil || !strings.Contains(err.Error(), "did not accept connections within") {
		t.Errorf("a service that never listens: %v", err)
	}
}
