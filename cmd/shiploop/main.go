// Command shiploop is the one binary of the shiploop continuous-delivery
// platform: `up` runs everything in one process, `serve` runs chosen
// services against a NATS cluster and PostgreSQL, `agent` runs jobs, and the
// rest is the operator CLI. main only wires; the work lives in pkg/ and
// services/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/vcsarg"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the CLI and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 {
			if c, ok := cmds[args[1]]; ok {
				c.stderr = stdout
				c.printUsage()
				return 0
			}
		}
		topUsage(stdout, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintf(stdout, "shiploop %s\n", version)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "shiploop: unknown command %q\n\n", args[0])
		topUsage(stderr, cmds)
		return 2
	}
	c.stdout, c.stderr = stdout, stderr
	c.flags.SetOutput(stderr)
	if err := c.parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "shiploop %s: %v\n", c.name, err)
		return 2
	}
	if err := c.run(c, c.args); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "shiploop %s: %v\nRun 'shiploop %s --help' for usage.\n", c.name, err, c.name)
			return 2
		}
		fmt.Fprintf(stderr, "shiploop %s: %v\n", c.name, err)
		return 1
	}
	_ = ctx
	return 0
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func topUsage(w io.Writer, cmds map[string]*command) {
	fmt.Fprintf(w, `shiploop: continuous delivery as one event-driven suite.

Usage: shiploop <command> [flags] [args]

Commands:
`)
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, `
Run 'shiploop <command> --help' for a command's flags. Every flag can also be
set with a SHIPLOOP_* variable (--nats-url is SHIPLOOP_NATS_URL).
`)
}

// signalContext is the context every long-running command runs under.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func commands() map[string]*command {
	list := []*command{upCommand(), serveCommand(), agentCommand(), watchCommand(), repoCommand(), buildsCommand(), buildCommand(), logsCommand(), demoCommand(), lintCommand(), secretCommand(), errorsCommand(), metricsCommand(), gateCommand(), deployCommand(), monitorCommand(), runbookCommand(), testsCommand(), doraCommand(), dashboardsCommand(), dlqCommand(), tokenCommand(), completionCommand(), flagsCommand(), schedulesCommand()}
	m := map[string]*command{}
	for _, c := range list {
		c.examples = examples[c.name]
		m[c.name] = c
	}
	return m
}

// serverFlags are the flags shared by up and serve.
func serverFlags(c *command, o *runOptions, split bool) {
	c.flags.StringVar(&o.dataDir, "data-dir", ".shiploop", "directory for embedded NATS, SQLite files, repository mirrors and workspaces")
	c.flags.StringVar(&o.httpListen, "http-listen", "127.0.0.1:8080", "address for webhooks and health (host:port; port 0 picks a free one)")
	c.flags.StringVar(&o.grpcListen, "grpc-listen", "127.0.0.1:9090", "address for the gRPC API")
	c.flags.StringVar(&o.token, "token", "", "bearer token required on gRPC calls (none when empty)")
	c.flags.StringVar(&o.allowedTransports, "allowed-transports", vcsarg.DefaultTransports, "clone URLs git and hg may use, comma-separated: https, http, ssh, git, file (local paths and file://; off unless named here)")
	c.flags.StringVar(&o.advertiseHost, "advertise-host", "", "host name or IP other shiploop processes dial for this one's services (advertised in NATS with the listeners' ports); the listen host, or this machine's host name when it listens on all addresses")
	c.flags.StringVar(&o.buildsAddr, "builds-addr", "", "gates: the builds service's gRPC address, for commit statuses; this process's when it runs builds, else found in NATS")
	c.flags.StringVar(&o.publicURL, "public-url", "", "base URL of the shiploop web UI; commit statuses link to <url>/builds/<id> (no link when empty)")
	c.flags.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	c.flags.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	c.flags.BoolVar(&o.json, "json", false, "print one JSON line with the addresses when ready, instead of the banner")
	c.flags.StringVar(&o.tls.Cert, "tls-cert", "", "serve HTTP and gRPC over TLS with this PEM certificate (chain)")
	c.flags.StringVar(&o.tls.Key, "tls-key", "", "the PEM private key of --tls-cert")
	c.flags.StringVar(&o.tls.CA, "tls-client-ca", "", "require client certificates signed by this PEM CA (mutual TLS)")
	c.flags.StringVar(&o.carbonListen, "carbon-listen", "127.0.0.1:2003", "metrics: Carbon plaintext on TCP and UDP (host:port; empty turns it off)")
	c.flags.StringVar(&o.deploys.graphiteURL, "graphite-url", "", "deploys: Graphite API base (e.g. http://graphite:8080) for graphite() checks; this process's metrics service, or the one advertised in NATS, when empty")
	c.flags.StringVar(&o.deploys.ticketPattern, "ticket-pattern", "", "deploys: regular expression for ticket keys in commit messages (default like ABC-123)")
	c.flags.StringVar(&o.deploys.ticketWebhook, "ticket-webhook", "", "deploys: URL that receives a JSON POST per ticket shipped to an environment")
	c.flags.StringVar(&o.pickleListen, "pickle-listen", "127.0.0.1:2004", "metrics: Carbon pickle protocol on TCP (empty turns it off)")
	c.flags.StringVar(&o.storageSchemas, "storage-schemas", "", "metrics: carbon's storage-schemas.conf (pattern → retentions such as 10s:1d,1m:30d,1h:5y); 10s:1d,1m:30d,1h:5y for all when empty")
	c.flags.StringVar(&o.storageAggregation, "storage-aggregation", "", "metrics: carbon's storage-aggregation.conf (pattern → aggregationMethod, xFilesFactor); *.count and *.sum sum, the rest average when empty")
	c.flags.DurationVar(&o.graphiteQueryTimeout, "graphite-query-timeout", 10*time.Second, "metrics: how long one Graphite render or MetricsService.Query may run; a longer one is stopped and answered 503 \"query timed out\"")
	cdeventsFlags(c, &o.cdevents)
	carbonLimitFlags(c, &o.metrics)
	if split {
		c.flags.StringVar(&o.natsURL, "nats-url", "", "NATS server URL(s), comma-separated (required)")
		c.flags.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file")
		c.flags.StringVar(&o.databaseURL, "database-url", "", "PostgreSQL URL (postgres://user@host:5432/db); SQLite files in --data-dir when empty")
		c.flags.IntVar(&o.replicas, "replicas", 1, "stream replicas (3 on a NATS cluster)")
	} else {
		c.flags.StringVar(&o.natsListen, "nats-listen", "", "also expose the embedded NATS on this address (e.g. 127.0.0.1:4222) for `nats sub 'shiploop.>'`")
	}
}

func upCommand() *command {
	o := runOptions{banner: true}
	c := newCommand("up", "shiploop up [flags]", "Run everything in one process: embedded NATS, SQLite, every service and one agent.",
		`Data lives in --data-dir (default ./.shiploop). Prints its URLs when ready; Ctrl-C stops cleanly.`)
	serverFlags(c, &o, false)
	c.flags.IntVar(&o.agents, "agents", 1, "jobs the built-in agent runs at once")
	c.flags.DurationVar(&o.lease, "lease", 30*time.Second, "how long a job waits for a silent agent before it goes to another")
	agentFlags(c, &o)
	c.run = func(c *command, args []string) error {
		if len(args) > 0 {
			return usagef("up takes no arguments (got %q)", strings.Join(args, " "))
		}
		if err := checkAgentFlags(o); err != nil {
			return err
		}
		o.services = knownServices
		ctx, stop := signalContext()
		defer stop()
		return run(ctx, o, c.stdout)
	}
	return c
}

func serveCommand() *command {
	o := runOptions{banner: true}
	c := newCommand("serve", "shiploop serve [flags] <service>...", "Run chosen services against a NATS cluster and PostgreSQL (split mode).",
		"Services: "+strings.Join(knownServices, ", ")+". Each service can run in many replicas; they share work through JetStream durable consumers.")
	serverFlags(c, &o, true)
	c.flags.IntVar(&o.agents, "agents", 1, "jobs the agent service runs at once")
	agentFlags(c, &o)
	dryRun := c.flags.Bool("dry-run", false, "check the flags and service names, print what would run, and exit")
	c.run = func(c *command, args []string) error {
		if len(args) == 0 {
			return usagef("name at least one service (%s)", strings.Join(knownServices, ", "))
		}
		if o.natsURL == "" {
			return usagef("--nats-url is required in split mode (or use `shiploop up` for everything on embedded defaults)")
		}
		if err := validateServices(args); err != nil {
			return usageError{err.Error()}
		}
		if err := checkAgentFlags(o); err != nil {
			return err
		}
		o.services = args
		if *dryRun {
			fmt.Fprintf(c.stdout, "would serve %s with NATS %s, database %s, HTTP %s, gRPC %s\n",
				strings.Join(args, ", "), o.natsURL, orDefault(o.databaseURL, "SQLite in "+o.dataDir), o.httpListen, o.grpcListen)
			return nil
		}
		ctx, stop := signalContext()
		defer stop()
		return run(ctx, o, c.stdout)
	}
	return c
}

func agentCommand() *command {
	o := runOptions{}
	c := newCommand("agent", "shiploop agent [flags]", "Run jobs from the JOBS queue (stateless; start as many as you like).", "")
	c.flags.StringVar(&o.natsURL, "nats-url", "", "NATS server URL (required)")
	c.flags.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file")
	c.flags.StringVar(&o.dataDir, "data-dir", ".shiploop-agent", "directory for job workspaces")
	c.flags.IntVar(&o.agents, "concurrency", 1, "jobs to run at once")
	c.flags.StringVar(&o.httpListen, "http-listen", "", "address for /livez, /readyz and /metrics (host:port; none when empty)")
	c.flags.IntVar(&o.replicas, "replicas", 1, "stream replicas (3 on a NATS cluster: must match `serve --replicas`, or the agent scales the streams down)")
	c.flags.DurationVar(&o.lease, "lease", 30*time.Second, "how long a job waits for this agent to answer before it goes to another agent")
	c.flags.StringVar(&o.allowedTransports, "allowed-transports", vcsarg.DefaultTransports, "clone URLs checkouts may use, comma-separated: https, http, ssh, git, file (local paths and file://; off unless named here)")
	c.flags.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	c.flags.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	agentFlags(c, &o)
	dryRun := c.flags.Bool("dry-run", false, "check the flags, print what would run, and exit")
	c.run = func(c *command, args []string) error {
		if len(args) > 0 {
			return usagef("agent takes no arguments (got %q)", strings.Join(args, " "))
		}
		if o.natsURL == "" {
			return usagef("--nats-url is required")
		}
		if err := checkAgentFlags(o); err != nil {
			return err
		}
		if *dryRun {
			fmt.Fprintf(c.stdout, "would run an agent with NATS %s, concurrency %d, workspaces in %s, labels [%s], job kinds [%s]\n",
				o.natsURL, o.agents, o.dataDir, strings.Join(splitList(o.agentLabels), ", "), strings.Join(orAll(splitList(o.agentKinds)), ", "))
			return nil
		}
		o.services = []string{"agent"}
		ctx, stop := signalContext()
		defer stop()
		return run(ctx, o, c.stdout)
	}
	return c
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// agentFlags are the flags of an agent: the standalone one, and the one `up`
// and `serve agent` run.
func agentFlags(c *command, o *runOptions) {
	c.flags.StringVar(&o.agentLabels, "labels", "", "comma-separated labels this agent offers (e.g. gpu,docker,region=eu): it takes jobs whose .shiploop.yml labels it all has, and jobs without labels; os=<GOOS> and arch=<GOARCH> are always added")
	c.flags.StringVar(&o.agentKinds, "kinds", "", "comma-separated job kinds this agent takes: "+strings.Join(bus.JobKinds, ", ")+" (default all)")
	c.flags.StringVar(&o.agentBackend, "backend", "process", "how the agent runs steps: process (child processes on this machine) or docker (a container per step and service, through the Docker Engine API at DOCKER_HOST or the default socket; Podman's compatible service works too)")
}

// checkAgentFlags names a bad label or job kind.
func checkAgentFlags(o runOptions) error {
	if _, _, err := bus.Pool(splitList(o.agentLabels)); err != nil {
		return usagef("--labels: %v", err)
	}
	if o.agentBackend != "" && o.agentBackend != "process" && o.agentBackend != "docker" {
		return usagef("--backend: unknown backend %q (want process or docker)", o.agentBackend)
	}
	for _, k := range splitList(o.agentKinds) {
		if !slices.Contains(bus.JobKinds, k) {
			return usagef("--kinds: unknown job kind %q (want %s)", k, strings.Join(bus.JobKinds, ", "))
		}
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func orAll(kinds []string) []string {
	if len(kinds) == 0 {
		return bus.JobKinds
	}
	return kinds
}
