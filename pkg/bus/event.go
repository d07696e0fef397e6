package bus

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// Subject and stream names.
const (
	StreamEvents = "EVENTS"
	StreamJobs   = "JOBS"
	StreamDLQ    = "DLQ"

	eventPrefix = "shiploop.evt."
	jobPrefix   = "shiploop.job."
	dlqPrefix   = "shiploop.dlq."
	logPrefix   = "shiploop.log."
	typePrefix  = "dev.shiploop."
	typeSuffix  = ".v1"
)

// CloudEvents binary-mode header names. NATS header names are
// case-sensitive; these are the exact spellings on the wire.
const (
	HeaderSpecVersion     = "ce-specversion"
	HeaderID              = "ce-id"
	HeaderType            = "ce-type"
	HeaderSource          = "ce-source"
	HeaderSubject         = "ce-subject"
	HeaderTime            = "ce-time"
	HeaderDataContentType = "ce-datacontenttype"
	HeaderDataSchema      = "ce-dataschema"
	// Extension attributes (lowercase alphanumerics, as CloudEvents requires).
	HeaderChainID     = "ce-chainid"
	HeaderRepository  = "ce-repository"
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"

	contentTypeProtobuf = "application/protobuf"
)

// Event is one event or job message: the CloudEvents attributes plus a
// protobuf payload.
type Event struct {
	// ID is a UUIDv7; New fills it.
	ID string
	// Type is the short type, "<domain>.<event>", e.g. "build.finished".
	// On the wire it becomes "dev.shiploop.build.finished.v1".
	Type string
	// Source is the producer, e.g. "/shiploop/builds".
	Source string
	// Subject is what the event is about (a build id, a job id).
	Subject string
	// Repository is the repository full name, "" for none.
	Repository string
	// ChainID links every event of one change.
	ChainID string
	Time    time.Time
	Data    proto.Message

	// Set on received events.
	Sequence    uint64
	NatsSubject string
	Header      nats.Header
}

// NewEvent makes an event with a fresh UUIDv7 id and the current time.
func NewEvent(typ, repository, subject string, data proto.Message) Event {
	return Event{ID: NewID(), Type: typ, Repository: repository, Subject: subject, Time: time.Now().UTC(), Data: data}
}

// NewID returns a UUIDv7 (time-ordered) string.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// uuid.NewV7 fails only when the system random source fails.
		return uuid.NewString()
	}
	return id.String()
}

// FullType turns "build.finished" into "dev.shiploop.build.finished.v1".
func FullType(short string) string {
	if strings.HasPrefix(short, typePrefix) {
		return short
	}
	return typePrefix + short + typeSuffix
}

// ShortType turns "dev.shiploop.build.finished.v1" into "build.finished".
func ShortType(full string) string {
	s := strings.TrimPrefix(full, typePrefix)
	return strings.TrimSuffix(s, typeSuffix)
}

// RepoToken maps a repository name to one subject token: lowercase, with
// every character outside [a-z0-9_-] replaced by "_" ("Acme/Web.Shop" ->
// "acme_web_shop"); "_" for none. Tokens may collide for exotic names;
// consumers filter on the ce-repository header when they need exactness.
func RepoToken(repo string) string {
	if repo == "" {
		return "_"
	}
	// Rune by rune: one "_" per character, as documented, not one per UTF-8 byte.
	var b strings.Builder
	for _, c := range strings.ToLower(repo) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			c = '_'
		}
		b.WriteRune(c)
	}
	return b.String()
}

// EventSubject is the NATS subject of an event type for a repository.
func EventSubject(shortType, repo string) string {
	return eventPrefix + shortType + "." + RepoToken(repo)
}

// JobSubject is the NATS subject of a job of a kind (build, test, deploy)
// that asks for no label (the default pool; see PoolSubject).
func JobSubject(kind, repo string) string {
	return PoolSubject(kind, DefaultPool, repo)
}

// LogSubject is the core NATS subject that carries a job's live log lines.
func LogSubject(jobID string) string { return logPrefix + jobID }

// EventFilter builds a subject filter from a type pattern ("build.finished",
// "build.*", "build", "" for all) and a repository ("" for all).
func EventFilter(typ, repo string) string {
	typ = ShortType(typ)
	var domain, event string
	switch parts := strings.SplitN(typ, ".", 2); {
	case typ == "" || typ == "*" || typ == ">":
		domain, event = "*", "*"
	case len(parts) == 1:
		domain, event = parts[0], "*"
	default:
		domain, event = parts[0], parts[1]
	}
	r := "*"
	if repo != "" {
		r = RepoToken(repo)
	}
	return eventPrefix + domain + "." + event + "." + r
}

// Encode turns an event into a NATS message on subject. The trace context in
// ctx travels in the traceparent header.
func Encode(ctx context.Context, subject string, ev Event) (*nats.Msg, error) {
	if ev.Data == nil {
		return nil, errors.New("bus: event has no data")
	}
	if ev.ID == "" {
		ev.ID = NewID()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	data, err := proto.Marshal(ev.Data)
	if err != nil {
		return nil, fmt.Errorf("bus: encoding %s: %w", ev.Type, err)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	h := m.Header
	h.Set(HeaderSpecVersion, "1.0")
	h.Set(HeaderID, ev.ID)
	h.Set(HeaderType, FullType(ev.Type))
	h.Set(HeaderSource, pct(ev.Source))
	if ev.Subject != "" {
		h.Set(HeaderSubject, pct(ev.Subject))
	}
	h.Set(HeaderTime, ev.Time.UTC().Format(time.RFC3339Nano))
	h.Set(HeaderDataContentType, contentTypeProtobuf)
	h.Set(HeaderDataSchema, string(ev.Data.ProtoReflect().Descriptor().FullName()))
	if ev.ChainID != "" {
		h.Set(HeaderChainID, ev.ChainID)
	}
	if ev.Repository != "" {
		h.Set(HeaderRepository, pct(ev.Repository))
	}
	h.Set(nats.MsgIdHdr, ev.ID)
	otel.GetTextMapPropagator().Inject(ctx, headerCarrier(h))
	return m, nil
}

// Decode reads an event from a NATS message. A message that is not a
// shiploop event (missing attributes, unknown schema, bad payload) returns an
// error wrapped in ErrMalformed.
func Decode(m *nats.Msg) (Event, error) {
	h := m.Header
	ev := Event{
		ID:          h.Get(HeaderID),
		Type:        ShortType(h.Get(HeaderType)),
		Source:      unpct(h.Get(HeaderSource)),
		Subject:     unpct(h.Get(HeaderSubject)),
		Repository:  unpct(h.Get(HeaderRepository)),
		ChainID:     h.Get(HeaderChainID),
		NatsSubject: m.Subject,
		Header:      h,
	}
	if ev.ID == "" || h.Get(HeaderType) == "" {
		return ev, fmt.Errorf("%w: message on %s has no ce-id or ce-type header", ErrMalformed, m.Subject)
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderTime)); err == nil {
		ev.Time = t
	}
	schema := h.Get(HeaderDataSchema)
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(schema))
	if err != nil {
		return ev, fmt.Errorf("%w: event %s (%s): unknown ce-dataschema %q", ErrMalformed, ev.ID, ev.Type, schema)
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(m.Data, msg); err != nil {
		return ev, fmt.Errorf("%w: event %s (%s): payload is not a %s: %v", ErrMalformed, ev.ID, ev.Type, schema, err)
	}
	ev.Data = msg
	if md, err := m.Metadata(); err == nil {
		ev.Sequence = md.Sequence.Stream
	}
	return ev, nil
}

// ErrMalformed marks a message that can never be handled; it goes to the DLQ
// at once instead of being retried.
var ErrMalformed = errors.New("malformed event")

// Proto returns the gRPC view of an event.
func (ev Event) Proto() (*eventsv1.Event, error) {
	var data *anypb.Any
	if ev.Data != nil {
		var err error
		if data, err = anypb.New(ev.Data); err != nil {
			return nil, err
		}
	}
	out := &eventsv1.Event{
		Id: ev.ID, Type: FullType(ev.Type), Source: ev.Source, Subject: ev.Subject,
		Time: timestamppb.New(ev.Time), ChainId: ev.ChainID, Repository: ev.Repository,
		Data: data, Sequence: ev.Sequence,
	}
	if ev.Header != nil {
		out.Traceparent = ev.Header.Get(HeaderTraceparent)
	}
	return out, nil
}

// pct percent-encodes what the CloudEvents HTTP binding asks of header
// values: bytes outside printable ASCII, space, '"' and "%" itself. Space
// matters on NATS too: header parsing trims leading and trailing spaces.
func pct(s string) string {
	for i := 0; i < len(s); i++ {
		if needsPct(s[i]) {
			return pctSlow(s)
		}
	}
	return s
}

func needsPct(c byte) bool { return c <= 0x20 || c > 0x7e || c == '%' || c == '"' }

func pctSlow(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsPct(c) {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func unpct(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// headerCarrier adapts nats.Header to OpenTelemetry's TextMapCarrier.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c headerCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// ContextFrom returns ctx carrying the trace context of a received event.
func ContextFrom(ctx context.Context, ev Event) context.Context {
	if ev.Header == nil {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, headerCarrier(ev.Header))
}
