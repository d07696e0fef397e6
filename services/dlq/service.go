// Package dlq serves DLQService: it lists, shows and replays the dead
// letters in the DLQ stream. A dead letter is either a copy a consumer
// stored on shiploop.dlq.<consumer> with Shiploop-Dlq-* headers (see
// bus.Outbox.Consume), or a JetStream MAX_DELIVERIES advisory, which this
// service resolves to the original stream message. The service owns no
// database: the DLQ stream is its state.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	dlqv1 "github.com/shiploop/shiploop/proto/shiploop/dlq/v1"
)

// Kinds of dead letter.
const (
	KindDeadLetter    = "dead-letter"
	KindMaxDeliveries = "max-deliveries"
)

const advisoryPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."

// Config configures the service.
type Config struct {
	// JetStream holds the DLQ, EVENTS and JOBS streams.
	JetStream jetstream.JetStream
	Logger    *slog.Logger
}

// Service reads and replays the DLQ stream.
type Service struct {
	js  jetstream.JetStream
	log *slog.Logger
}

// New returns the service.
func New(cfg Config) (*Service, error) {
	if cfg.JetStream == nil {
		return nil, errors.New("dlq: Config.JetStream is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{js: cfg.JetStream, log: cfg.Logger.With("service", "dlq")}, nil
}

// ErrNotFound is returned for a sequence that is not (or no longer) in the DLQ.
var ErrNotFound = errors.New("no such dead letter")

// Letter is one dead letter, resolved to its original message.
type Letter struct {
	*dlqv1.DeadLetter
	// original is the message to republish on replay.
	original *nats.Msg
}

// advisory is JetStream's io.nats.jetstream.advisory.v1.max_deliver.
type advisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// List returns up to limit dead letters, oldest first, optionally only one
// consumer's. Advisories whose original message is gone are listed with the
// reason saying so.
func (s *Service) List(ctx context.Context, consumer string, limit int) ([]*Letter, error) {
	if limit <= 0 {
		limit = 100
	}
	st, err := s.js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("dlq: opening stream %s: %w", bus.StreamDLQ, err)
	}
	var out []*Letter
	for seq := uint64(1); len(out) < limit; {
		raw, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dlq: reading %s from seq %d: %w", bus.StreamDLQ, seq, err)
		}
		seq = raw.Sequence + 1
		l, err := s.resolve(ctx, raw)
		if err != nil {
			s.log.Warn("unreadable dead letter", "seq", raw.Sequence, "err", err)
			continue
		}
		if consumer == "" || l.Consumer == consumer {
			out = append(out, l)
		}
	}
	return out, nil
}

// Get returns the dead letter at DLQ sequence seq.
func (s *Service) Get(ctx context.Context, seq uint64) (*Letter, error) {
	st, err := s.js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("dlq: opening stream %s: %w", bus.StreamDLQ, err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: DLQ sequence %d (list them with `shiploop dlq ls`)", ErrNotFound, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: reading %s seq %d: %w", bus.StreamDLQ, seq, err)
	}
	return s.resolve(ctx, raw)
}

// resolve turns a DLQ stream message into a Letter.
func (s *Service) resolve(ctx context.Context, raw *jetstream.RawStreamMsg) (*Letter, error) {
	l := &Letter{DeadLetter: &dlqv1.DeadLetter{Seq: raw.Sequence, Time: timestamppb.New(raw.Time), Headers: map[string]string{}}}
	if strings.HasPrefix(raw.Subject, advisoryPrefix) {
		var a advisory
		if err := json.Unmarshal(raw.Data, &a); err != nil {
			return nil, fmt.Errorf("max-deliveries advisory %d: %w", raw.Sequence, err)
		}
		l.Kind, l.Consumer, l.Stream, l.StreamSeq, l.Deliveries = KindMaxDeliveries, a.Consumer, a.Stream, a.StreamSeq, a.Deliveries
		l.Reason = fmt.Sprintf("consumer %s did not acknowledge after %d deliveries", a.Consumer, a.Deliveries)
		st, err := s.js.Stream(ctx, a.Stream)
		if err == nil {
			var orig *jetstream.RawStreamMsg
			if orig, err = st.GetMsg(ctx, a.StreamSeq); err == nil {
				l.Subject = orig.Subject
				l.original = &nats.Msg{Subject: orig.Subject, Header: orig.Header, Data: orig.Data}
			}
		}
		if err != nil {
			l.Reason += fmt.Sprintf("; original %s seq %d unavailable: %v", a.Stream, a.StreamSeq, err)
		}
	} else {
		h := raw.Header
		l.Kind = KindDeadLetter
		l.Consumer = h.Get(bus.HeaderDLQConsumer)
		l.Reason = h.Get(bus.HeaderDLQReason)
		l.Subject = h.Get(bus.HeaderDLQSubject)
		l.StreamSeq, _ = strconv.ParseUint(h.Get(bus.HeaderDLQStreamSeq), 10, 64)
		l.Deliveries, _ = strconv.ParseUint(h.Get(bus.HeaderDLQDeliveries), 10, 64)
		if l.Consumer == "" {
			l.Consumer = strings.TrimPrefix(raw.Subject, "shiploop.dlq.")
		}
		if l.Subject == "" {
			return nil, fmt.Errorf("dead letter %d on %s lacks %s", raw.Sequence, raw.Subject, bus.HeaderDLQSubject)
		}
		l.Stream = streamFor(l.Subject)
		orig := nats.Header{}
		for k, v := range h {
			if strings.HasPrefix(k, "Shiploop-Dlq-") || strings.HasPrefix(k, "Nats-") {
				continue
			}
			orig[k] = v
		}
		l.original = &nats.Msg{Subject: l.Subject, Header: orig, Data: raw.Data}
	}
	if l.original != nil {
		for k, v := range l.original.Header {
			if len(v) > 0 && !strings.HasPrefix(k, "Nats-") {
				l.Headers[k] = v[0]
			}
		}
		l.EventId = l.original.Header.Get(bus.HeaderID)
		l.EventType = l.original.Header.Get(bus.HeaderType)
		l.Data = l.original.Data
	}
	return l, nil
}

func streamFor(subject string) string {
	switch {
	case strings.HasPrefix(subject, "shiploop.evt."):
		return bus.StreamEvents
	case strings.HasPrefix(subject, "shiploop.job."):
		return bus.StreamJobs
	}
	return ""
}

// Replay republishes the dead letter's original message to its original
// subject under a new Nats-Msg-Id, then deletes it from the DLQ. Consumers
// that handled the event already skip it (their inbox holds its event id);
// the consumer that failed handles it afresh. Replaying a sequence twice is
// harmless: the republish is deduplicated by its Nats-Msg-Id.
func (s *Service) Replay(ctx context.Context, seq uint64) (*dlqv1.ReplayDeadLetterResponse, error) {
	l, err := s.Get(ctx, seq)
	if err != nil {
		return nil, err
	}
	if l.original == nil {
		return nil, fmt.Errorf("%w: DLQ sequence %d: %s", ErrGone, seq, l.Reason)
	}
	m := nats.NewMsg(l.original.Subject)
	m.Data = l.original.Data
	for k, v := range l.original.Header {
		if !strings.HasPrefix(k, "Nats-") {
			m.Header[k] = v
		}
	}
	id := l.EventId
	if id == "" {
		id = l.Stream + "." + strconv.FormatUint(l.StreamSeq, 10)
	}
	msgID := id + ".replay." + strconv.FormatUint(seq, 10)
	m.Header.Set(nats.MsgIdHdr, msgID)
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("dlq: republishing DLQ sequence %d to %s: %w (the dead letter is kept)", seq, m.Subject, err)
	}
	st, err := s.js.Stream(ctx, bus.StreamDLQ)
	if err == nil {
		err = st.DeleteMsg(ctx, seq)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("dlq: republished DLQ sequence %d as %s seq %d but removing it failed: %w (replaying it again is safe)", seq, ack.Stream, ack.Sequence, err)
	}
	s.log.Info("dead letter replayed", "seq", seq, "consumer", l.Consumer, "subject", m.Subject, "event", l.EventId, "stream_seq", ack.Sequence)
	return &dlqv1.ReplayDeadLetterResponse{Subject: m.Subject, StreamSeq: ack.Sequence, MsgId: msgID}, nil
}

// ErrGone is returned when replaying an advisory whose original message the
// stream no longer holds.
var ErrGone = errors.New("original message is gone")

// RegisterGRPC registers DLQService on a gRPC server.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	dlqv1.RegisterDLQServiceServer(r, &grpcServer{s: s})
}
