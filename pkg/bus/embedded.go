package bus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures an in-process NATS server.
type EmbeddedConfig struct {
	// StoreDir holds JetStream's files.
	StoreDir string
	// Listen, when set (host:port, port 0 for a free one), also accepts TCP
	// clients so that `nats sub 'shiploop.>'` works against a laptop install.
	// Empty means no network listener at all.
	Listen string
	// ServerName defaults to "shiploop-embedded".
	ServerName string
	// Logs turns the server's own logging on.
	Logs bool
}

// Embedded is a nats-server with JetStream running inside this process.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a nats-server in-process and waits until it accepts
// connections.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      !cfg.Logs,
		DontListen: cfg.Listen == "",
		// Payloads are small protobufs; 8 MiB leaves room for job specs.
		MaxPayload: 8 << 20,
	}
	if opts.ServerName == "" {
		opts.ServerName = "shiploop-embedded"
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen address %q: %w (want host:port, e.g. 127.0.0.1:4222)", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen port %q is not a number", port)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Logs {
		srv.ConfigureLogger()
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 10s (store dir %s)", cfg.StoreDir)
	}
	return &Embedded{srv: srv}, nil
}

// Connect opens a client connection without TCP.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connecting to embedded nats: %w", err)
	}
	return nc, nil
}

// ClientURL is the TCP URL clients can use, or "" when not listening.
func (e *Embedded) ClientURL() string {
	addr := e.srv.Addr()
	if addr == nil {
		return ""
	}
	return "nats://" + addr.String()
}

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Connect dials a NATS server (split mode).
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w (check --nats-url / SHIPLOOP_NATS_URL)", url, err)
	}
	return nc, nil
}
