package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/server"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// clientOptions are the flags of every command that talks to a server.
type clientOptions struct {
	server string
	token  string
	json   bool
	tls    server.TLSFiles
}

func clientFlags(c *command, o *clientOptions) {
	c.flags.StringVar(&o.server, "server", "127.0.0.1:9090", "gRPC address of shiploop")
	c.flags.StringVar(&o.token, "token", "", "bearer token, when the server requires one")
	c.flags.BoolVar(&o.json, "json", false, "print JSON (one object per line) for scripts")
	c.flags.StringVar(&o.tls.CA, "tls-ca", "", "talk TLS and trust the server certificates this PEM CA signed (system roots with another --tls-* flag)")
	c.flags.StringVar(&o.tls.Cert, "tls-cert", "", "client certificate (PEM) for a server that requires mutual TLS")
	c.flags.StringVar(&o.tls.Key, "tls-key", "", "the PEM private key of --tls-cert")
}

// conn opens the one kind of gRPC connection every CLI command uses:
// TLS when a --tls-* flag is given (a client certificate for mutual TLS),
// plaintext otherwise.
func (o clientOptions) conn(extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if o.tls.Enabled() {
		cfg, err := o.tls.ClientConfig()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	return grpc.NewClient(o.server, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, extra...)...)
}

func (o clientOptions) dial() (buildsv1.BuildServiceClient, func(), error) {
	conn, err := o.conn()
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
	}
	return buildsv1.NewBuildServiceClient(conn), func() { _ = conn.Close() }, nil
}

func (o clientOptions) ctx(parent context.Context) context.Context {
	if o.token != "" {
		return metadata.AppendToOutgoingContext(parent, "authorization", "Bearer "+o.token)
	}
	return parent
}

var jsonOut = protojson.MarshalOptions{UseProtoNames: true}

func printJSON(w io.Writer, m proto.Message) {
	b, _ := jsonOut.Marshal(m)
	fmt.Fprintln(w, string(b))
}

func watchCommand() *command {
	var o clientOptions
	var types listFlag
	var repo string
	var since sinceFlag
	var wf watchFilters
	c := newCommand("watch", "shiploop watch [flags]", "Show every event as it happens, one readable line each.",
		`Columns: time, type, repository, then the event's key fields.
Filter with --type (build.finished, build.*, build; repeatable), --repo and
--env (events about one environment: deploys, environments, issues).
--since 10m (or an RFC 3339 time) replays what already happened first.
--chain ID follows one change from push to production: only events whose
chain id (ce-chainid) is ID, replayed from the change itself.
Colour when stdout is a terminal (--color auto|always|never; NO_COLOR).
Examples:
  shiploop watch --repo acme/web --type build.finished
  shiploop watch --chain 0199a8c0-7a1e-7c4e-9f00-1c2d3e4f5a6b
  shiploop watch --env production --since 1h --json`)
	clientFlags(c, &o)
	c.flags.Var(&types, "type", "event types to show (repeatable or comma-separated)")
	c.flags.StringVar(&repo, "repo", "", "only this repository's events")
	c.flags.Var(&since, "since", "replay events since a duration ago (10m) or a time")
	wf.flags(c)
	c.run = func(c *command, args []string) error {
		if err := wf.prepare(c, &since.t); err != nil {
			return err
		}
		cl, closeFn, err := o.dial()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, stop := signalContext()
		defer stop()
		req := &buildsv1.WatchEventsRequest{Types: types, Repository: repo}
		if !since.t.IsZero() {
			req.Since = timestamppb.New(since.t)
		}
		st, err := cl.WatchEvents(o.ctx(ctx), req)
		if err != nil {
			return err
		}
		for {
			resp, err := st.Recv()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, io.EOF) {
					return nil
				}
				return fmt.Errorf("watching %s: %w", o.server, err)
			}
			ev := resp.GetEvent()
			if !wf.match(ev) {
				continue
			}
			if o.json {
				printJSON(c.stdout, ev)
				continue
			}
			fmt.Fprintln(c.stdout, wf.paint(ev, formatEvent(ev)))
		}
	}
	return c
}

// formatEvent is the one-line human form of an event.
func formatEvent(ev *eventsv1.Event) string {
	t := ev.GetTime().AsTime().Local().Format("15:04:05.000")
	typ := strings.TrimSuffix(strings.TrimPrefix(ev.GetType(), "dev.shiploop."), ".v1")
	repo := ev.GetRepository()
	if repo == "" {
		repo = "-"
	}
	return fmt.Sprintf("%s  %-20s %-24s %s", t, typ, repo, keyFields(ev))
}

func keyFields(ev *eventsv1.Event) string {
	if ev.GetData() == nil {
		return ""
	}
	m, err := ev.GetData().UnmarshalNew()
	if err != nil {
		return ""
	}
	switch d := m.(type) {
	case *eventsv1.Change:
		s := fmt.Sprintf("%s %s", d.GetRef(), short(d.GetAfter()))
		if d.GetPullRequestNumber() > 0 {
			s += fmt.Sprintf(" PR #%d", d.GetPullRequestNumber())
		}
		if d.GetSender() != "" {
			s += " by " + d.GetSender()
		}
		return s
	case *eventsv1.BuildCreated:
		return fmt.Sprintf("#%d %s %s version=%s", d.GetNumber(), d.GetRef(), short(d.GetCommit()), d.GetVersion())
	case *eventsv1.BuildStarted:
		return fmt.Sprintf("build=%s version=%s agent=%s", short8(d.GetBuildId()), d.GetVersion(), d.GetAgent())
	case *eventsv1.BuildFinished:
		s := fmt.Sprintf("#%d %s version=%s in %s", d.GetNumber(), statusWord(d.GetStatus()), d.GetVersion(), d.GetDuration().AsDuration().Round(time.Millisecond))
		if d.GetFailedStep() != "" {
			s += " failed_step=" + d.GetFailedStep()
		}
		if d.GetError() != "" && d.GetFailedStep() == "" {
			s += " error=" + strconv.Quote(d.GetError())
		}
		return s
	case *eventsv1.JobQueued:
		return fmt.Sprintf("job=%s kind=%s steps=%s", short8(d.GetJobId()), d.GetKind(), strings.Join(d.GetSteps(), ","))
	case *eventsv1.JobStarted:
		return fmt.Sprintf("job=%s agent=%s attempt=%d", short8(d.GetJobId()), d.GetAgent(), d.GetAttempt())
	case *eventsv1.JobStepFinished:
		st := d.GetStep()
		return fmt.Sprintf("job=%s step=%s %s exit=%d in %s", short8(d.GetJobId()), st.GetName(), statusWord(st.GetStatus()), st.GetExitCode(), st.GetDuration().AsDuration().Round(time.Millisecond))
	case *eventsv1.JobFinished:
		s := fmt.Sprintf("job=%s %s in %s", short8(d.GetJobId()), statusWord(d.GetStatus()), d.GetDuration().AsDuration().Round(time.Millisecond))
		if d.GetFailedStep() != "" {
			s += " failed_step=" + d.GetFailedStep()
		}
		return s
	}
	if s, ok := verdictFields(m); ok {
		return s
	}
	return ev.GetSubject()
}

func statusWord(s eventsv1.BuildStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "BUILD_STATUS_"))
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

func short8(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}

func repoCommand() *command {
	var o clientOptions
	var cloneURL, secret, branch, forgeKind, forgeAPI, forgeRepo, forgeToken string
	var vcs, conduitURL, conduitToken, callsign, stagingURL string
	var publicOnly boolFlag
	c := newCommand("repo", "shiploop repo add NAME --clone-url URL [--secret S] [--forge KIND --forge-token T] | shiploop repo list",
		"Register repositories and list them.",
		`add registers (or updates) a repository and prints the webhook secret to set on the forge.
Point the forge's webhook at http://HOST:8080/hooks/<forge> with that secret.

With --forge, every build posts its commit status (context shiploop/build: pending,
running, then success, failure or error) to the forge's API with --forge-token:
  github   --forge-api defaults to https://api.github.com (Enterprise: https://HOST/api/v3)
  gitlab   --forge-api defaults to https://gitlab.com/api/v4; --forge-repo is a project id or path
  gitea, forgejo   --forge-api is required: https://HOST/api/v1
--forge-repo defaults to NAME. Updating without --forge keeps the forge settings, without
--forge-token keeps the stored token; --forge none stops posting. The token is never shown.

Mercurial: --vcs hg; --public-only builds only public-phase
changesets from pushes (drafts arrive through Harbormaster).
Phabricator/Phorge: Harbormaster's "Make HTTP Request" step calls
http://HOST:8080/hooks/harbormaster?repo=NAME with the webhook secret as token; results go
back through --conduit-url with --conduit-token; --callsign and --staging-url as Diffusion
and the staging area name them.`)
	clientFlags(c, &o)
	c.commonFlags()
	c.flags.StringVar(&cloneURL, "clone-url", "", "URL or path git clones the repository from (add)")
	c.flags.StringVar(&secret, "secret", "", "webhook secret (add; a random one is made when empty)")
	c.flags.StringVar(&branch, "default-branch", "", "default branch (add; main for git, default for hg)")
	c.flags.StringVar(&forgeKind, "forge", "", "post commit statuses to this forge: github, gitlab, gitea, forgejo, or none (add)")
	c.flags.StringVar(&forgeAPI, "forge-api", "", "the forge's API base URL (add; default per forge)")
	c.flags.StringVar(&forgeRepo, "forge-repo", "", "owner/repo, or a GitLab project id or path, on the forge (add; default NAME)")
	c.flags.StringVar(&forgeToken, "forge-token", "", "token allowed to set commit statuses (add; prefer the variable to the flag)")
	c.flags.StringVar(&vcs, "vcs", "", "git or hg (add; git for a new repository)")
	c.flags.Var(&publicOnly, "public-only", "hg: build only public-phase changesets from pushes (add)")
	c.flags.StringVar(&conduitURL, "conduit-url", "", "Phabricator/Phorge base URL for harbormaster.sendmessage, or none (add)")
	c.flags.StringVar(&conduitToken, "conduit-token", "", "Conduit API token (add; prefer the variable to the flag)")
	c.flags.StringVar(&callsign, "callsign", "", "Diffusion callsign of the repository (add)")
	c.flags.StringVar(&stagingURL, "staging-url", "", "staging area URL that Harbormaster diffs are fetched from (add)")
	// Each subcommand's own flags (subflags.go): anything else is refused.
	c.sub("add", "clone-url", "secret", "default-branch", "forge", "forge-api", "forge-repo", "forge-token", "vcs", "public-only",
		"conduit-url", "conduit-token", "callsign", "staging-url")
	c.sub("list")
	c.run = func(c *command, args []string) error {
		if len(args) == 0 {
			return usagef("say add or list")
		}
		cl, closeFn, err := o.dial()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 30*time.Second)
		defer cancel()
		switch args[0] {
		case "add":
			if len(args) != 2 {
				return usagef("repo add takes one NAME, e.g. acme/web")
			}
			resp, err := cl.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: args[1], CloneUrl: cloneURL, WebhookSecret: secret, DefaultBranch: branch,
				Forge: forgeKind, ForgeApiUrl: forgeAPI, ForgeRepo: forgeRepo, ForgeToken: forgeToken,
				Vcs: vcs, PublicOnly: publicOnly.ptr(), ConduitUrl: conduitURL, ConduitToken: conduitToken, Callsign: callsign, StagingUrl: stagingURL})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			r := resp.GetRepository()
			fmt.Fprintf(c.stdout, "registered %s (clone %s)\nwebhook secret: %s\n", r.GetName(), r.GetCloneUrl(), resp.GetWebhookSecret())
			if r.GetForge() != "" {
				fmt.Fprintf(c.stdout, "commit statuses: %s %s via %s\n", r.GetForge(), r.GetForgeRepo(), r.GetForgeApiUrl())
			}
			return nil
		case "list":
			resp, err := cl.ListRepositories(ctx, &buildsv1.ListRepositoriesRequest{PageSize: 500})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			if !o.json {
				fmt.Fprintln(tw, "NAME\tCLONE URL\tDEFAULT BRANCH\tSTATUSES TO")
			}
			for _, r := range resp.GetRepositories() {
				if o.json {
					printJSON(c.stdout, r)
					continue
				}
				to := "-"
				if r.GetForge() != "" {
					to = r.GetForge() + " " + r.GetForgeRepo()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.GetName(), r.GetCloneUrl(), r.GetDefaultBranch(), to)
			}
			return tw.Flush()
		}
		return usagef("unknown repo action %q (add or list)", args[0])
	}
	return c
}

func buildsCommand() *command {
	var o clientOptions
	var repo string
	var limit int
	c := newCommand("builds", "shiploop builds [list] [--repo R] | shiploop builds get ID|REPO#N|CHAIN", "List builds or show one with its steps.", "")
	clientFlags(c, &o)
	c.flags.StringVar(&repo, "repo", "", "only this repository (list)")
	c.flags.IntVar(&limit, "limit", 20, "how many builds to list")
	c.run = func(c *command, args []string) error {
		cl, closeFn, err := o.dial()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 30*time.Second)
		defer cancel()
		if len(args) == 0 || args[0] == "list" {
			resp, err := cl.ListBuilds(ctx, &buildsv1.ListBuildsRequest{Repository: repo, PageSize: int32(limit)})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			if !o.json {
				fmt.Fprintln(tw, "REPOSITORY\t#\tSTATUS\tVERSION\tREF\tCOMMIT\tCREATED")
			}
			for _, b := range resp.GetBuilds() {
				if o.json {
					printJSON(c.stdout, b)
					continue
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", b.GetRepository(), b.GetNumber(), statusWord(b.GetStatus()), b.GetVersion(), b.GetRef(), short(b.GetCommit()), b.GetCreatedAt().AsTime().Local().Format(time.DateTime))
			}
			return tw.Flush()
		}
		if args[0] != "get" || len(args) != 2 {
			return usagef("builds get takes one BUILD: %s", buildRefHelp)
		}
		b, err := resolveBuild(ctx, cl, args[1])
		if err != nil {
			return err
		}
		if o.json {
			printJSON(c.stdout, b)
			return nil
		}
		fmt.Fprintf(c.stdout, "build %s#%d  %s\n  id       %s\n  version  %s\n  ref      %s @ %s\n  trigger  %s\n", b.GetRepository(), b.GetNumber(), statusWord(b.GetStatus()), b.GetId(), b.GetVersion(), b.GetRef(), short(b.GetCommit()), b.GetTrigger())
		if b.GetError() != "" {
			fmt.Fprintf(c.stdout, "  error    %s\n", b.GetError())
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		for _, j := range b.GetJobs() {
			label := ""
			if len(j.GetMatrix()) > 0 {
				keys := slices.Sorted(maps.Keys(j.GetMatrix()))
				for _, k := range keys {
					label += " " + k + "=" + j.GetMatrix()[k]
				}
			}
			fmt.Fprintf(tw, "  job %s %s%s  (shiploop logs %s)\n", j.GetId(), statusWord(j.GetStatus()), label, j.GetId())
			fmt.Fprintln(tw, "    STEP\tSTATUS\tEXIT\tDURATION\tNOTE")
			for _, s := range j.GetSteps() {
				fmt.Fprintf(tw, "    %s\t%s\t%d\t%s\t%s\n", s.GetName(), statusWord(s.GetStatus()), s.GetExitCode(), s.GetDuration().AsDuration().Round(time.Millisecond), s.GetError())
			}
		}
		return tw.Flush()
	}
	return c
}

func buildCommand() *command {
	var o clientOptions
	c := newCommand("build", "shiploop build trigger REPO [REF] | build cancel BUILD | build retry BUILD",
		"Start a build by hand, cancel one, or run one again.",
		`trigger builds REF (a branch, tag or full ref; the default branch when omitted).
cancel stops a queued or running build: its processes are killed.
retry builds the same commit again as a new build.
BUILD is `+buildRefHelp+`.`)
	clientFlags(c, &o)
	c.run = func(c *command, args []string) error {
		if len(args) < 2 {
			return usagef("say trigger REPO [REF], cancel ID or retry ID")
		}
		cl, closeFn, err := o.dial()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), time.Minute)
		defer cancel()
		switch args[0] {
		case "trigger":
			if len(args) > 3 {
				return usagef("usage: shiploop build trigger REPO [REF]")
			}
			req := &buildsv1.TriggerBuildRequest{Repository: args[1]}
			if len(args) == 3 {
				req.Ref = args[2]
			}
			resp, err := cl.TriggerBuild(ctx, req)
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			fmt.Fprintf(c.stdout, "triggered %s %s @ %s (event %s)\n", args[1], resp.GetRef(), short(resp.GetCommit()), resp.GetEventId())
		case "cancel":
			id, err := resolveBuildID(ctx, cl, args[1])
			if err != nil {
				return err
			}
			resp, err := cl.CancelBuild(ctx, &buildsv1.CancelBuildRequest{Id: id})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			if resp.GetCanceled() {
				fmt.Fprintf(c.stdout, "canceled build %s\n", args[1])
			} else {
				fmt.Fprintf(c.stdout, "build %s had already finished\n", args[1])
			}
		case "retry":
			id, err := resolveBuildID(ctx, cl, args[1])
			if err != nil {
				return err
			}
			resp, err := cl.RetryBuild(ctx, &buildsv1.RetryBuildRequest{Id: id})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			fmt.Fprintf(c.stdout, "retrying build %s (event %s)\n", args[1], resp.GetEventId())
		default:
			return usagef("unknown build action %q (trigger, cancel or retry)", args[0])
		}
		return nil
	}
	return c
}

func secretCommand() *command {
	var o clientOptions
	var value string
	c := newCommand("secret", "shiploop secret set REPO NAME [--value V] | secret ls REPO | secret rm REPO NAME",
		"Manage a repository's secrets; values are never printed.",
		`set reads the value from standard input unless --value is given (it would show in the
shell history). Steps that list the secret in .shiploop.yml see it as an environment
variable of the same name; agents mask its value in every log line.`)
	clientFlags(c, &o)
	c.flags.StringVar(&value, "value", "", "the secret value (set); read from standard input when empty")
	c.run = func(c *command, args []string) error {
		if len(args) < 2 {
			return usagef("say set REPO NAME, ls REPO or rm REPO NAME")
		}
		cl, closeFn, err := o.dial()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 30*time.Second)
		defer cancel()
		switch args[0] {
		case "set":
			if len(args) != 3 {
				return usagef("secret set takes REPO NAME")
			}
			if value == "" {
				b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
				if err != nil {
					return err
				}
				value = strings.TrimRight(string(b), "\r\n")
			}
			if _, err := cl.SetSecret(ctx, &buildsv1.SetSecretRequest{Repository: args[1], Name: args[2], Value: value}); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "set %s for %s\n", args[2], args[1])
		case "ls":
			resp, err := cl.ListSecrets(ctx, &buildsv1.ListSecretsRequest{Repository: args[1]})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			for _, n := range resp.GetNames() {
				fmt.Fprintln(c.stdout, n)
			}
		case "rm":
			if len(args) != 3 {
				return usagef("secret rm takes REPO NAME")
			}
			resp, err := cl.DeleteSecret(ctx, &buildsv1.DeleteSecretRequest{Repository: args[1], Name: args[2]})
			if err != nil {
				return err
			}
			if !resp.GetDeleted() {
				return fmt.Errorf("%s has no secret %s", args[1], args[2])
			}
			fmt.Fprintf(c.stdout, "removed %s from %s\n", args[2], args[1])
		default:
			return usagef("unknown secret action %q (set, ls or rm)", args[0])
		}
		return nil
	}
	return c
}

func logsCommand() *command {
	var o clientOptions
	var follow bool
	c := newCommand("logs", "shiploop logs [-f] BUILD|JOB", "Print a build's or a job's log, in the order the steps printed it.",
		`BUILD is `+buildRefHelp+` (every job of the build, one after another);
JOB is a job id (shiploop builds get shows them). With -f, keep printing live
lines until the job ends.`)
	clientFlags(c, &o)
	c.flags.BoolVar(&follow, "follow", false, "keep printing lines until the job ends")
	c.flags.BoolVar(&follow, "f", false, "short for --follow")
	c.run = func(c *command, args []string) error {
		if len(args) != 1 {
			return usagef("logs takes one BUILD or JOB")
		}
		cl, closeFn, err := o.dial()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, stop := signalContext()
		defer stop()
		jobs := []string{args[0]}
		if b, err := resolveBuild(o.ctx(ctx), cl, args[0]); err == nil {
			jobs = b.GetJobIds()
		} else if strings.Contains(args[0], "#") {
			return err
		}
		for _, job := range jobs {
			if err := printLog(ctx, cl, o, c, job, follow, len(jobs) > 1); err != nil {
				return err
			}
		}
		return nil
	}
	return c
}

func printLog(ctx context.Context, cl buildsv1.BuildServiceClient, o clientOptions, c *command, job string, follow, header bool) error {
	st, err := cl.StreamLogs(o.ctx(ctx), &buildsv1.StreamLogsRequest{JobId: job, Follow: follow})
	if err != nil {
		return err
	}
	if header && !o.json {
		fmt.Fprintf(c.stdout, "== job %s\n", job)
	}
	step := "\x00"
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		l := resp.GetLine()
		if o.json {
			printJSON(c.stdout, l)
			continue
		}
		if l.GetStep() != step {
			step = l.GetStep()
			if step != "" {
				fmt.Fprintf(c.stdout, "--- step %s\n", step)
			}
		}
		fmt.Fprintf(c.stdout, "%s %s\n", l.GetTime().AsTime().Local().Format("15:04:05.000"), l.GetText())
	}
}

var _ = json.Marshal
