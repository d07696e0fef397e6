package flags

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	ofrep "github.com/open-feature/go-sdk-contrib/providers/ofrep"
	"github.com/open-feature/go-sdk/openfeature"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	flagsv1 "github.com/shiploop/shiploop/proto/shiploop/flags/v1"
	"github.com/shiploop/shiploop/services/flags/eval"
)

type harness struct {
	svc    *Service
	bus    *bus.Bus
	http   *httptest.Server
	client flagsv1.FlagServiceClient
}

func newHarness(t *testing.T, db *store.DB) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := bustest.Start(t, bus.Options{Source: "/shiploop/flags"})
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := New(ctx, Config{DB: db, Bus: b, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(mux)
	g := server.NewGRPC(server.GRPCConfig{Logger: log})
	svc.RegisterGRPC(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = g.Serve(ctx, lis) }()
	go func() { defer wg.Done(); _ = svc.Run(ctx) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		wg.Wait()
		srv.Close()
	})
	return &harness{svc: svc, bus: b, http: srv, client: flagsv1.NewFlagServiceClient(conn)}
}

func canary(env string) *flagsv1.Flag {
	return &flagsv1.Flag{Key: "deploy.canary-enabled", Environment: env, Enabled: true,
		Variants: map[string]string{"on": "true", "off": "false"}, DefaultVariant: "off",
		Rules: []*flagsv1.Rule{{Attribute: "email", Op: "ends_with", Values: []string{"@acme.com"}, Variant: "on"}}}
}

func TestFlags(t *testing.T) {
	storetest.Engines(t, "flags", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := t.Context()

		// Changes are events.
		var mu sync.Mutex
		var changes []*eventsv1.FlagChanged
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		go func() {
			_ = h.bus.Watch(wctx, bus.WatchOptions{FromStart: true, Filters: []string{bus.EventFilter("flag", "")}}, func(ev bus.Event) error {
				mu.Lock()
				changes = append(changes, ev.Data.(*eventsv1.FlagChanged))
				mu.Unlock()
				return nil
			})
		}()

		if _, err := h.client.SetFlag(ctx, &flagsv1.SetFlagRequest{Flag: canary("staging"), By: "alice"}); err != nil {
			t.Fatal(err)
		}
		prod := canary("production")
		prod.Rules = nil
		prod.Rollout = &flagsv1.Rollout{Percent: 100, Variant: "on"}
		prod.Enabled = false
		if _, err := h.client.SetFlag(ctx, &flagsv1.SetFlagRequest{Flag: prod, By: "alice"}); err != nil {
			t.Fatal(err)
		}
		color := &flagsv1.Flag{Key: "ui.color", Environment: "staging", Enabled: true, Variants: map[string]string{"blue": `"blue"`, "green": `"green"`}, DefaultVariant: "green"}
		if _, err := h.client.SetFlag(ctx, &flagsv1.SetFlagRequest{Flag: color}); err != nil {
			t.Fatal(err)
		}
		bad := canary("staging")
		bad.DefaultVariant = "maybe"
		if _, err := h.client.SetFlag(ctx, &flagsv1.SetFlagRequest{Flag: bad}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "default_variant") {
			t.Fatalf("bad flag: %v", err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			mu.Lock()
			n := len(changes)
			mu.Unlock()
			if n == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("saw %d flag.changed events, want 3", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if c := changes[0]; c.GetKey() != "deploy.canary-enabled" || c.GetEnvironment() != "staging" || c.GetBy() != "alice" || c.GetVersion() != 1 {
			t.Fatalf("first change %v", c)
		}

		// The real OpenFeature SDK with its OFREP provider.
		if err := openfeature.SetNamedProviderAndWait(t.Name(), ofrep.NewProvider(h.http.URL)); err != nil {
			t.Fatal(err)
		}
		of := openfeature.NewClient(t.Name())
		staff := openfeature.NewEvaluationContext("u1", map[string]any{"environment": "staging", "email": "ann@acme.com"})
		d, err := of.BooleanValueDetails(ctx, "deploy.canary-enabled", false, staff)
		if err != nil || !d.Value || d.Variant != "on" || d.Reason != openfeature.TargetingMatchReason {
			t.Fatalf("staff in staging: %+v %v", d, err)
		}
		guest := openfeature.NewEvaluationContext("u2", map[string]any{"environment": "staging", "email": "bob@example.org"})
		if d, err := of.BooleanValueDetails(ctx, "deploy.canary-enabled", true, guest); err != nil || d.Value || d.Variant != "off" {
			t.Fatalf("guest in staging: %+v %v", d, err)
		}
		inProd := openfeature.NewEvaluationContext("u1", map[string]any{"environment": "production", "email": "ann@acme.com"})
		// Disabled: OpenFeature hands the caller's own default back.
		if d, err := of.BooleanValueDetails(ctx, "deploy.canary-enabled", true, inProd); err != nil || !d.Value || d.Reason != openfeature.DisabledReason {
			t.Fatalf("disabled in production: %+v %v", d, err)
		}
		if s, err := of.StringValue(ctx, "ui.color", "red", staff); err != nil || s != "green" {
			t.Fatalf("ui.color = %q, %v", s, err)
		}
		if d, err := of.BooleanValueDetails(ctx, "no.such-flag", true, staff); err == nil || !d.Value || d.ErrorCode != openfeature.FlagNotFoundCode {
			t.Fatalf("unknown flag: %+v %v", d, err)
		}

		// Bulk evaluation with ETag.
		post := func(etag string) (*http.Response, string) {
			req, _ := http.NewRequest(http.MethodPost, h.http.URL+"/ofrep/v1/evaluate/flags", strings.NewReader(`{"context":{"targetingKey":"u1","environment":"staging","email":"ann@acme.com"}}`))
			req.Header.Set("Content-Type", "application/json")
			if etag != "" {
				req.Header.Set("If-None-Match", etag)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp, string(b)
		}
		resp, body := post("")
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || etag == "" || !strings.Contains(body, `"key":"deploy.canary-enabled"`) || !strings.Contains(body, `"key":"ui.color"`) {
			t.Fatalf("bulk = %d %s %q", resp.StatusCode, body, etag)
		}
		if resp, _ := post(etag); resp.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match with the current ETag: %d, want 304", resp.StatusCode)
		}
		color.DefaultVariant = "blue"
		if _, err := h.client.SetFlag(ctx, &flagsv1.SetFlagRequest{Flag: color}); err != nil {
			t.Fatal(err)
		}
		if resp, body := post(etag); resp.StatusCode != 200 || resp.Header.Get("ETag") == etag || !strings.Contains(body, `"blue"`) {
			t.Fatalf("after a change: %d %s", resp.StatusCode, body)
		}

		// Missing environment: INVALID_CONTEXT (400).
		r2, err := http.Post(h.http.URL+"/ofrep/v1/evaluate/flags/ui.color", "application/json", strings.NewReader(`{"context":{"targetingKey":"u1"}}`))
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := io.ReadAll(r2.Body)
		r2.Body.Close()
		if r2.StatusCode != 400 || !strings.Contains(string(b2), "INVALID_CONTEXT") {
			t.Fatalf("no environment: %d %s", r2.StatusCode, b2)
		}

		list, err := h.client.ListFlags(ctx, &flagsv1.ListFlagsRequest{Environment: "staging"})
		if err != nil || len(list.GetFlags()) != 2 {
			t.Fatalf("ListFlags = %v %v", list, err)
		}
		if _, err := h.client.DeleteFlag(ctx, &flagsv1.DeleteFlagRequest{Key: "ui.color", Environment: "staging"}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.GetFlag(ctx, &flagsv1.GetFlagRequest{Key: "ui.color", Environment: "staging"}); status.Code(err) != codes.NotFound {
			t.Fatalf("deleted flag: %v", err)
		}
	})
}

func TestRolloutIsStable(t *testing.T) {
	f := &flagsv1.Flag{Key: "k", Environment: "e", Enabled: true, Variants: map[string]string{"on": "true", "off": "false"}, DefaultVariant: "off",
		Rollout: &flagsv1.Rollout{Percent: 30, Variant: "on"}}
	on := 0
	for i := range 1000 {
		ctx := map[string]any{"targetingKey": "user-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)}
		r1, r2 := eval.Evaluate(f, ctx), eval.Evaluate(f, ctx)
		if r1.Variant != r2.Variant || r1.Reason != eval.ReasonSplit {
			t.Fatalf("unstable or wrong reason: %+v %+v", r1, r2)
		}
		if r1.Variant == "on" {
			on++
		}
	}
	if on < 220 || on > 380 {
		t.Fatalf("%d of 1000 in a 30%% rollout", on)
	}
}
