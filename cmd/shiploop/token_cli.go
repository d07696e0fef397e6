package main

import (
	"context"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/tokens"
	tokensv1 "github.com/shiploop/shiploop/proto/shiploop/tokens/v1"
)

// openTokens opens the token bucket every process shares.
func openTokens(ctx context.Context, nc *nats.Conn, replicas int) (*tokens.Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var st *tokens.Store
	err = bus.UntilSettled(ctx, slog.Default(), "opening the token bucket", func() (err error) {
		st, err = tokens.Open(ctx, js, replicas)
		return err
	})
	return st, err
}

// registerTokens serves TokenService (admin scope) on the process's gRPC server.
func registerTokens(g *server.GRPC, st *tokens.Store) {
	tokensv1.RegisterTokenServiceServer(g, &tokens.GRPC{Store: st})
}

func tokenCommand() *command {
	var o clientOptions
	var scope string
	c := newCommand("token", "shiploop token [flags] create --scope read|write|admin NAME | revoke NAME | ls",
		"Create, revoke and list API tokens (needs an admin token).",
		`Tokens are bearer tokens for gRPC calls and mutating HTTP routes. Scopes:
read (Get*, List*, Watch*, Stream*, Find*, Query* RPCs and other read-only
views), write (everything that changes state: triggers, deploys, policies),
admin (token management; includes write and read). The server's --token is
an admin token. Secrets are stored hashed in the JetStream KV bucket
shiploop_tokens, so every process of a split install honours them; a new
token's secret is printed once.
Exit status: 0 done, 1 refused (unknown name, name taken, not admin), 2 usage.
Examples:
  shiploop token create --scope read grafana
  shiploop token create --scope write ci --json | jq -r .secret
  shiploop token ls
  shiploop token revoke grafana`)
	clientFlags(c, &o)
	c.commonFlags()
	c.flags.StringVar(&scope, "scope", "read", "create: read, write or admin")
	// Each subcommand's own flags (subflags.go): anything else is refused.
	c.sub("create", "scope")
	c.sub("revoke|ls")
	c.run = func(c *command, args []string) error {
		if len(args) == 0 {
			return usagef("want 'token create --scope SCOPE NAME', 'token revoke NAME' or 'token ls'")
		}
		switch {
		case (args[0] == "create" || args[0] == "revoke") && len(args) != 2:
			return usagef("'token %s' takes one NAME", args[0])
		case args[0] == "ls" && len(args) != 1:
			return usagef("'token ls' takes no arguments")
		case args[0] != "create" && args[0] != "revoke" && args[0] != "ls":
			return usagef("unknown 'token %s': want create, revoke or ls", args[0])
		}
		if _, err := server.ParseScope(scope); err != nil {
			return usagef("--scope: %v", err)
		}
		conn, err := o.conn()
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := tokensv1.NewTokenServiceClient(conn)
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 30*time.Second)
		defer cancel()
		switch args[0] {
		case "create":
			resp, err := cl.CreateToken(ctx, &tokensv1.CreateTokenRequest{Name: args[1], Scope: scope})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			fmt.Fprintf(c.stdout, "token %s (%s) created; its secret, shown only now:\n%s\n", resp.GetToken().GetName(), resp.GetToken().GetScope(), resp.GetSecret())
		case "revoke":
			if _, err := cl.RevokeToken(ctx, &tokensv1.RevokeTokenRequest{Name: args[1]}); err != nil {
				return err
			}
			if !o.json {
				fmt.Fprintf(c.stdout, "token %s revoked\n", args[1])
			}
		default:
			resp, err := cl.ListTokens(ctx, &tokensv1.ListTokensRequest{})
			if err != nil {
				return err
			}
			if o.json {
				for _, t := range resp.GetTokens() {
					printJSON(c.stdout, t)
				}
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSCOPE\tPREFIX\tCREATED")
			for _, t := range resp.GetTokens() {
				fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\n", t.GetName(), t.GetScope(), t.GetPrefix(), t.GetCreatedAt().AsTime().Local().Format(time.DateTime))
			}
			return tw.Flush()
		}
		return nil
	}
	return c
}
