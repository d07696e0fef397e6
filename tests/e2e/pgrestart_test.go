package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// privatePostgres is a PostgreSQL server of the test's own, started from
// Debian's binaries in a temporary directory on a free port, so that the
// test can stop and restart it without disturbing anyone else's.
type privatePostgres struct {
	bin, dir, port string
	asPostgres     bool // running as root: run the server as the postgres user
}

func (p *privatePostgres) run(args ...string) (string, error) {
	var cmd *exec.Cmd
	if p.asPostgres {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
	} else {
		cmd = exec.Command(args[0], args[1:]...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *privatePostgres) pgctl(args ...string) error {
	full := append([]string{filepath.Join(p.bin, "pg_ctl"), "-D", filepath.Join(p.dir, "data"), "-w", "-t", "60"}, args...)
	if out, err := p.run(full...); err != nil {
		return fmt.Errorf("pg_ctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (p *privatePostgres) start() error {
	return p.pgctl("-l", filepath.Join(p.dir, "log"), "-o", "-p "+p.port+" -k "+p.dir+" -c listen_addresses=127.0.0.1 -c fsync=off", "start")
}

// stopImmediate stops the server the hard way: no shutdown checkpoint,
// connections cut, crash recovery at the next start.
func (p *privatePostgres) stopImmediate() error { return p.pgctl("-m", "immediate", "stop") }

// startPrivatePostgres initialises and starts one, or skips with the reason.
func startPrivatePostgres(t *testing.T) (*privatePostgres, string) {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		needService(t, "PostgreSQL restart test needs Debian's PostgreSQL binaries (/usr/lib/postgresql/*/bin/initdb)")
	}
	p := &privatePostgres{bin: filepath.Dir(bins[len(bins)-1])}
	dir, err := os.MkdirTemp("", "shiploop-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p.dir = dir
	addr := freeAddr(t)
	p.port = addr[strings.LastIndex(addr, ":")+1:]
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			needService(t, "PostgreSQL restart test runs as root and needs a postgres user to run the server: "+err.Error())
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.asPostgres = true
	}
	if out, err := p.run(filepath.Join(p.bin, "initdb"), "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		needService(t, fmt.Sprintf("PostgreSQL restart test: initdb failed: %v\n%s", err, out))
	}
	if err := p.start(); err != nil {
		needService(t, "PostgreSQL restart test: "+err.Error())
	}
	t.Cleanup(func() { _ = p.pgctl("-m", "fast", "stop") })
	return p, fmt.Sprintf("postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable", p.port)
}

// TestPostgresRestartUnderLoad: split mode on a private PostgreSQL; while
// pushes flow through build → tests → gate, PostgreSQL is stopped with
// `pg_ctl -m immediate` (connections cut, crash recovery), left down for
// three seconds and started again. The services back off and reconnect
// without a restart of their own, webhooks refused meanwhile are
// redelivered, and every pipeline completes with each action exactly once.
func TestPostgresRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("PostgreSQL restart test")
	}
	n := envPushes(t, "SHIPLOOP_CLUSTER_PUSHES", 40)
	natsBin := natsServerBinary(t)
	pg, dbURL := startPrivatePostgres(t)
	natsURL := startNATSServer(t, natsBin)

	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	serve := &killable{name: "serve builds testruns gates", ready: readyJSON, args: []string{"serve", "--json", "--nats-url", natsURL,
		"--database-url", dbURL, "--data-dir", t.TempDir(), "--http-listen", httpAddr, "--grpc-listen", grpcAddr,
		"--carbon-listen", "127.0.0.1:0", "--pickle-listen", "127.0.0.1:0", "builds", "testruns", "gates"}}
	agent := &killable{name: "agent", ready: readyLog, args: []string{"agent", "--nats-url", natsURL, "--data-dir", t.TempDir(), "--lease", "3s"}}
	for _, p := range []*killable{serve, agent} {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.stop(t) })
	}
	js := jetStreamAt(t, natsURL)

	pushes := crashRepo(t, grpcAddr, n)
	start := time.Now()
	var down time.Duration
	pushAll(t, httpAddr, pushes, func(i int) {
		if i != n/3 {
			return
		}
		stopped := time.Now()
		if err := pg.stopImmediate(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // the outage itself
		if err := pg.start(); err != nil {
			t.Fatal(err)
		}
		down = time.Since(stopped)
		t.Logf("PostgreSQL stopped (immediate) after %d pushes, back after %s", i, down.Round(100*time.Millisecond))
	})
	evs, per := waitChains(t, js, n, 2*time.Minute) // without progress
	missing, dup := verifyChains(t, evs, per, n)
	t.Logf("postgres restart: %d pushes, %d pipelines, %d events, PostgreSQL down %s; all done in %s; %d actions missing, %d duplicated",
		n, len(per), len(evs), down.Round(100*time.Millisecond), time.Since(start).Round(time.Second), missing, dup)
}
