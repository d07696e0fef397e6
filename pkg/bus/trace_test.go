package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shiploop/shiploop/pkg/bus"
)

// useTracing installs a real SDK tracer provider recording spans in memory
// and the W3C propagator, as telemetry.Setup does, and puts the previous
// globals back when the test ends. Tests using it must not be parallel.
func useTracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Errorf("shutting the tracer provider down: %v", err)
		}
	})
	return tp, rec
}

// TestTraceContextCrossesTheBus: an event published inside a span carries
// its traceparent, and the consumer's span continues the same trace, whether
// the event went out directly or through the outbox.
func TestTraceContextCrossesTheBus(t *testing.T) {
	tp, rec := useTracing(t)
	b, _ := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	runBG(t, "relay", o.Run)
	handled := make(chan trace.SpanContext, 4)
	runBG(t, "Consume", func(ctx context.Context) error {
		return o.Consume(ctx, bus.ConsumerConfig{Name: "test-trace", Filters: changes},
			func(ctx context.Context, _ *bus.Tx, _ bus.Event) error {
				handled <- trace.SpanContextFromContext(ctx)
				return nil
			})
	})

	tests := []struct {
		name    string
		publish func(ctx context.Context, ev bus.Event) error
	}{
		{"direct", b.Publish},
		{"outbox", func(ctx context.Context, ev bus.Event) error {
			return o.InTx(ctx, func(tx *bus.Tx) error { return tx.Publish(ev) })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, span := tp.Tracer("bus-test").Start(t.Context(), "handle webhook")
			ev := changePushed("acme/web", tt.name)
			err := tt.publish(ctx, ev)
			span.End()
			if err != nil {
				t.Fatal(err)
			}
			sc := span.SpanContext()

			var stored string
			waitFor(t, "the event on EVENTS", func() bool {
				for _, m := range streamMsgs(t, b, bus.StreamEvents, ">") {
					if m.Header.Get(bus.HeaderID) == ev.ID {
						stored = m.Header.Get("traceparent")
						return true
					}
				}
				return false
			})
			if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; stored != want {
				t.Errorf("traceparent = %q, want %q", stored, want)
			}

			select {
			case got := <-handled:
				if got.TraceID() != sc.TraceID() {
					t.Errorf("handler's trace id %s, want the publisher's %s", got.TraceID(), sc.TraceID())
				}
			case <-time.After(waitTimeout):
				t.Fatal("event not handled")
			}

			var consume sdktrace.ReadOnlySpan
			waitFor(t, "the consumer span to end", func() bool {
				for _, s := range rec.Ended() {
					if s.SpanContext().TraceID() == sc.TraceID() && strings.HasPrefix(s.Name(), "consume ") {
						consume = s
						return true
					}
				}
				return false
			})
			if consume.Parent().SpanID() != sc.SpanID() {
				t.Errorf("consumer span's parent %s, want the publishing span %s", consume.Parent().SpanID(), sc.SpanID())
			}
			if consume.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("consumer span kind %v, want consumer", consume.SpanKind())
			}
		})
	}
}
