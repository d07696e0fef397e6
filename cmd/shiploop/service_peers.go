package main

// What the services need beyond the shared wiring (services.go): their
// flags' options, and how one service reaches another (gates asks builds
// for forge settings; deploys asks metrics for graphite() checks).

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/server"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	"github.com/shiploop/shiploop/services/gates"
	"github.com/shiploop/shiploop/services/metrics"
)

// cdeventsOptions configure the CDEvents bridge.
type cdeventsOptions struct {
	sinkURL string
	schemas string
}

func cdeventsFlags(c *command, o *cdeventsOptions) {
	c.flags.StringVar(&o.sinkURL, "cdevents-sink", "", "cdevents: URL that receives every exported CDEvent as a CloudEvents binary-mode POST (none when empty)")
	c.flags.StringVar(&o.schemas, "cdevents-schemas", "", "cdevents: directory of a cdevents/spec v0.5.1 checkout (schemas/, custom/); exported events are checked and POST /cdevents is enabled only with it")
}

// metricsOptions are the metrics service's flags beyond its listeners.
type metricsOptions struct {
	carbon metrics.CarbonLimits
	// queryMaxSeries bounds the series one Graphite query may match
	// (metrics.Config.MaxSeries).
	queryMaxSeries int
}

// carbonLimitFlags are the limits on what Carbon clients can make the
// metrics service hold (up and serve); refusals are counted under
// shiploop.metrics.ingest.* and logged once a minute at most.
func carbonLimitFlags(c *command, o *metricsOptions) {
	c.flags.IntVar(&o.carbon.MaxSeries, "carbon-max-series", metrics.DefaultCarbonMaxSeries, "metrics: series Carbon traffic may make in all; past it points of a new series are dropped and counted (shiploop.metrics.ingest.series_refused), points of existing series are always kept. A series written to holds about 1-1.7 KB of memory (50,000: about 80 MB; a million: about 1.6 GB); negative turns it off")
	c.flags.IntVar(&o.carbon.MaxNewSeriesPerMinute, "carbon-max-new-series-per-minute", metrics.DefaultCarbonMaxNewSeriesPerMinute, "metrics: new series Carbon traffic may make per minute, in bursts of a minute's worth (carbon's MAX_CREATES_PER_MINUTE, 50 there; go-carbon's max-creates-per-second); past it points of new series are dropped and counted (shiploop.metrics.ingest.rate_limited); negative turns it off")
	c.flags.IntVar(&o.carbon.MaxLineLength, "carbon-max-line-length", metrics.DefaultCarbonMaxLineLength, "metrics: bytes of a Carbon plaintext line (TCP and UDP) before its newline; a longer line is dropped unbuffered and counted (shiploop.metrics.ingest.lines_too_long), and the connection goes on")
	c.flags.DurationVar(&o.carbon.IdleTimeout, "carbon-idle-timeout", metrics.DefaultCarbonIdleTimeout, "metrics: close a Carbon TCP connection (plaintext or pickle) that sends nothing for this long (counted: shiploop.metrics.ingest.connections_idle_closed); negative turns it off")
	c.flags.IntVar(&o.queryMaxSeries, "graphite-query-max-series", metrics.DefaultQueryMaxSeries, "metrics: series one Graphite render, find or MetricsService.Query may match over all its targets; a query that matches more is answered 400 with the reason")
	c.flags.IntVar(&o.carbon.MaxConnections, "carbon-max-connections", metrics.DefaultCarbonMaxConnections, "metrics: Carbon TCP connections open at once, plaintext and pickle together; further ones are closed as they are accepted and counted (shiploop.metrics.ingest.connections_refused); negative turns it off")
}

// deploysOptions are the deploys service's flags (see serverFlags).
type deploysOptions struct {
	graphiteURL   string
	ticketPattern string
	ticketWebhook string
}

// inProcess answers requests for host "in-process" with the process's own
// HTTP mux (the metrics service's Graphite API) and sends the rest (HTTP
// probes) over the network.
type inProcess struct {
	mux      http.Handler
	fallback http.RoundTripper
	// local: metrics runs in this process; otherwise lookup finds the
	// base URL (http://host:port) of a metrics instance advertised in NATS.
	local  bool
	lookup func(context.Context) (string, error)
}

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != "in-process" {
		return t.fallback.RoundTrip(r)
	}
	if !t.local {
		base, err := t.lookup(r.Context())
		if err != nil {
			return nil, fmt.Errorf("finding the metrics service for graphite() checks (or set --graphite-url): %w", err)
		}
		u, err := url.Parse(base)
		if err != nil {
			return nil, fmt.Errorf("metrics advertises %q: %w", base, err)
		}
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = u.Scheme, u.Host, u.Host
		return t.fallback.RoundTrip(r)
	}
	rec := httptest.NewRecorder()
	t.mux.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// buildsForges asks the builds service for a repository's forge settings.
type buildsForges struct {
	token string
	creds func() (credentials.TransportCredentials, error)
	addr  func(context.Context) (string, error)
	mu    sync.Mutex
	conn  *grpc.ClientConn
}

func (f *buildsForges) client(ctx context.Context) (buildsv1.BuildServiceClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		addr, err := f.addr(ctx)
		if err != nil {
			return nil, err
		}
		if addr == "" {
			return nil, fmt.Errorf("no builds service to ask for forge settings (set --builds-addr to its gRPC address)")
		}
		creds, err := f.creds()
		if err != nil {
			return nil, err
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, err
		}
		f.conn = conn
	}
	return buildsv1.NewBuildServiceClient(f.conn), nil
}

func (f *buildsForges) ForgeSettings(ctx context.Context, repo string) (gates.Forge, error) {
	cl, err := f.client(ctx)
	if err != nil {
		return gates.Forge{}, err
	}
	if f.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+f.token)
	}
	resp, err := cl.GetForgeSettings(ctx, &buildsv1.GetForgeSettingsRequest{Repository: repo})
	if err != nil {
		if c := status.Code(err); c == codes.Unavailable || c == codes.Unimplemented {
			f.close() // builds moved or this was no builds: look again next time
		}
		return gates.Forge{}, fmt.Errorf("asking builds for %s's forge settings: %w", repo, err)
	}
	return gates.Forge{Kind: resp.GetForge(), APIURL: resp.GetApiUrl(), Repo: resp.GetForgeRepo(), Token: resp.GetToken()}, nil
}

func (f *buildsForges) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn != nil {
		err := f.conn.Close()
		f.conn = nil
		return err
	}
	return nil
}

// ingestURL is where SDKs reach the HTTP listener, for the DSNs printed by
// `shiploop errors project create`: SHIPLOOP_PUBLIC_URL when set (behind a
// proxy), else the listen address when its port is fixed; "" when the port
// is picked at start (the CLI's --ingest-url then supplies it).
func ingestURL(listen string) string {
	if u := os.Getenv("SHIPLOOP_PUBLIC_URL"); u != "" {
		return u
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" || port == "" {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// peerCreds are the credentials for calling another service's gRPC API
// (gates asks builds): plaintext, or with --tls-cert the same TLS, trusting
// the server's own certificate (and --tls-client-ca) and, for mutual TLS,
// presenting it as the client certificate (it then needs the clientAuth
// usage too).
func (e *moduleEnv) peerCreds() (credentials.TransportCredentials, error) {
	t := e.opts.tls
	if !t.Enabled() {
		return insecure.NewCredentials(), nil
	}
	cfg, err := server.TLSFiles{CA: t.Cert, Cert: t.Cert, Key: t.Key}.ClientConfig()
	if err != nil {
		return nil, err
	}
	if t.CA == "" {
		cfg.Certificates = nil // no mutual TLS: no client certificate needed
	} else if pem, err := os.ReadFile(t.CA); err == nil {
		cfg.RootCAs.AppendCertsFromPEM(pem)
	}
	return credentials.NewTLS(cfg), nil
}
