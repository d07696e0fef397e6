package errortrack

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	"github.com/shiploop/shiploop/services/errortrack/envelope"
)

// Routes registers the Sentry intake on mux: POST /api/{project_id}/envelope/
// and /store/, with and without the trailing slash, and their CORS
// preflights; and the web API under /api/0/ (webapi.go).
func (s *Service) Routes(mux *http.ServeMux) {
	s.webRoutes(mux)
	for _, p := range []string{"/api/{project_id}/envelope/", "/api/{project_id}/envelope"} {
		mux.HandleFunc("POST "+p, s.serveEnvelope)
		mux.HandleFunc("OPTIONS "+p, servePreflight)
	}
	for _, p := range []string{"/api/{project_id}/store/", "/api/{project_id}/store"} {
		mux.HandleFunc("POST "+p, s.serveStore)
		mux.HandleFunc("OPTIONS "+p, servePreflight)
	}
}

// servePreflight lets browser SDKs post from any origin.
func servePreflight(w http.ResponseWriter, r *http.Request) {
	cors(w)
	w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Content-Encoding, X-Sentry-Auth, Authorization, Baggage, Sentry-Trace")
	w.Header().Set("Access-Control-Max-Age", "3600")
	w.WriteHeader(http.StatusNoContent)
}

func cors(w http.ResponseWriter) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Access-Control-Expose-Headers", "X-Sentry-Error, X-Sentry-Rate-Limits, Retry-After")
}

// ingestError is an answer other than 200, in Sentry's shape.
type ingestError struct {
	status     int
	detail     string
	retryAfter time.Duration
	rateLimits string
}

func (e *ingestError) Error() string { return e.detail }

func fail(status int, format string, a ...any) *ingestError {
	return &ingestError{status: status, detail: fmt.Sprintf(format, a...)}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Service) answer(w http.ResponseWriter, id string, err *ingestError) {
	cors(w)
	if err == nil {
		reply := map[string]string{}
		if id != "" {
			reply["id"] = id
		}
		writeJSON(w, http.StatusOK, reply)
		return
	}
	if err.retryAfter > 0 {
		secs := int64(math.Ceil(err.retryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		if err.rateLimits != "" {
			w.Header().Set("X-Sentry-Rate-Limits", fmt.Sprintf("%d:%s", secs, err.rateLimits))
		}
	}
	w.Header().Set("X-Sentry-Error", err.detail)
	writeJSON(w, err.status, map[string]any{"detail": err.detail, "causes": []string{err.detail}})
}

func (s *Service) serveEnvelope(w http.ResponseWriter, r *http.Request) {
	id, err := s.ingest(r, false)
	s.answer(w, id, err)
}

func (s *Service) serveStore(w http.ResponseWriter, r *http.Request) {
	// The store endpoint also takes an envelope when it says it is one.
	isEnvelope := strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "application/x-sentry-envelope")
	id, err := s.ingest(r, !isEnvelope)
	s.answer(w, id, err)
}

// credentials are the keys a request names, from every place one may be.
type credentials struct {
	keys    []string // public keys, one per source
	sources []string
}

func (c *credentials) add(source, public string) {
	if public == "" {
		return
	}
	c.keys = append(c.keys, public)
	c.sources = append(c.sources, source)
}

// parseSentryAuth reads "Sentry sentry_key=…, sentry_version=7, …".
func parseSentryAuth(v string) string {
	v = strings.TrimSpace(v)
	if len(v) < 7 || !strings.EqualFold(v[:7], "sentry ") {
		return ""
	}
	for _, part := range strings.Split(v[7:], ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.TrimSpace(k) == "sentry_key" {
			return strings.TrimSpace(val)
		}
	}
	return ""
}

func requestCredentials(r *http.Request) credentials {
	var c credentials
	c.add("X-Sentry-Auth", parseSentryAuth(r.Header.Get("X-Sentry-Auth")))
	if a := r.Header.Get("Authorization"); a != "" {
		if k := parseSentryAuth(a); k != "" {
			c.add("Authorization", k)
		} else if b, ok := strings.CutPrefix(a, "Basic "); ok {
			if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b)); err == nil {
				user, _, _ := strings.Cut(string(raw), ":")
				c.add("Authorization", user)
			}
		}
	}
	c.add("sentry_key", r.URL.Query().Get("sentry_key"))
	return c
}

// ingest takes one request: it checks, decodes and parses it, and answers
// only once the envelope is durable on JetStream. store is the legacy
// endpoint with one event as the body.
func (s *Service) ingest(r *http.Request, store bool) (string, *ingestError) {
	ctx := r.Context()
	projectID, err := strconv.ParseInt(r.PathValue("project_id"), 10, 64)
	if err != nil || projectID <= 0 {
		return "", fail(http.StatusBadRequest, "project id %q in the URL is not a number (use the DSN shiploop printed)", r.PathValue("project_id"))
	}
	creds := requestCredentials(r)
	// Header and query keys are checked before the body is read, so a
	// revoked key costs little.
	if len(creds.keys) > 0 {
		if _, ierr := s.authorize(ctx, projectID, creds); ierr != nil {
			return "", ierr
		}
	}
	body, err := envelope.Decode(http.MaxBytesReader(nil, r.Body, s.cfg.MaxBodyBytes), r.Header.Get("Content-Encoding"), s.cfg.MaxEnvelopeBytes)
	if err != nil {
		return "", bodyError(err)
	}
	if store {
		if body, err = storeToEnvelope(body, s.cfg.MaxEnvelopeBytes); err != nil {
			return "", bodyError(err)
		}
	}
	env, err := envelope.Parse(body, s.cfg.Limits)
	if err != nil {
		return "", bodyError(err)
	}
	if dsn := env.Header.DSN; dsn != "" {
		u, err := url.Parse(dsn)
		if err != nil || u.User == nil || u.User.Username() == "" {
			return "", fail(http.StatusUnauthorized, "envelope header dsn %q is not a DSN with a key", dsn)
		}
		if pid := u.Path[strings.LastIndexByte(u.Path, '/')+1:]; pid != strconv.FormatInt(projectID, 10) {
			return "", fail(http.StatusBadRequest, "envelope header dsn names project %q but the request was sent to project %d", pid, projectID)
		}
		creds.add("envelope dsn", u.User.Username())
	}
	// Status codes as Sentry's Relay answers them (relay-server
	// src/extractors/request_meta.rs, BadEventMeta::into_response: missing,
	// multiple or unreadable auth 401, a bad project 400; and
	// src/endpoints/common.rs, BadStoreRequest::EventRejected: a key or
	// project Relay does not accept, unknown, disabled or revoked, 403).
	if len(creds.keys) == 0 {
		return "", fail(http.StatusUnauthorized, "missing authentication: send X-Sentry-Auth, the sentry_key query parameter or a dsn in the envelope header")
	}
	p, ierr := s.authorize(ctx, projectID, creds)
	if ierr != nil {
		return "", ierr
	}
	eventID, body, ierr := checkItems(env, body)
	if ierr != nil {
		return "", ierr
	}
	if cats := limitedCategories(env); cats != "" {
		if lim := s.limiter.take(p, time.Now()); lim != nil {
			return "", &ingestError{status: http.StatusTooManyRequests, retryAfter: lim.retryAfter,
				detail:     fmt.Sprintf("project %d is over its %s", p.id, strings.ReplaceAll(lim.code, "_", " ")),
				rateLimits: cats + ":project:" + lim.code}
		}
	}
	if err := s.publish(ctx, p.id, creds.keys[0], eventID, body, clientIP(r)); err != nil {
		return "", err
	}
	return eventID, nil
}

// authorize checks that every key given is the same, known, not revoked,
// and belongs to the project in the URL.
func (s *Service) authorize(ctx context.Context, projectID int64, creds credentials) (project, *ingestError) {
	for i := 1; i < len(creds.keys); i++ {
		if creds.keys[i] != creds.keys[0] {
			return project{}, fail(http.StatusUnauthorized, "conflicting keys: %s and %s name different keys", creds.sources[0], creds.sources[i])
		}
	}
	k, err := s.keys.key(ctx, creds.keys[0])
	switch {
	case errors.Is(err, errNotFound):
		return project{}, fail(http.StatusForbidden, "unknown DSN key %q", creds.keys[0])
	case err != nil:
		s.log.Error("looking up a DSN key", "err", err)
		return project{}, fail(http.StatusServiceUnavailable, "storage unavailable, retry later")
	case k.revokedAt != 0:
		return project{}, fail(http.StatusForbidden, "DSN key %q was revoked", k.public)
	}
	if k.projectID != projectID {
		if _, err := s.keys.project(ctx, projectID); errors.Is(err, errNotFound) {
			return project{}, fail(http.StatusForbidden, "project %d does not exist", projectID)
		}
		return project{}, fail(http.StatusForbidden, "DSN key %q belongs to project %d, not %d", k.public, k.projectID, projectID)
	}
	p, err := s.keys.project(ctx, projectID)
	if errors.Is(err, errNotFound) {
		return p, fail(http.StatusForbidden, "project %d does not exist", projectID)
	}
	if err != nil {
		s.log.Error("looking up a project", "err", err)
		return p, fail(http.StatusServiceUnavailable, "storage unavailable, retry later")
	}
	return p, nil
}

func bodyError(err error) *ingestError {
	var ee *envelope.Error
	if errors.As(err, &ee) {
		if ee.Too {
			return fail(http.StatusRequestEntityTooLarge, "%s", ee.Msg)
		}
		return fail(http.StatusBadRequest, "%s", ee.Msg)
	}
	return fail(http.StatusBadRequest, "%v", err)
}

// storeToEnvelope wraps a store-endpoint body (event JSON, or
// base64(zlib(JSON)) from old SDKs) into an envelope.
func storeToEnvelope(body []byte, max int64) ([]byte, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] != '{' {
		raw, err := base64.StdEncoding.DecodeString(string(body))
		if err != nil {
			return nil, &envelope.Error{Msg: "store body is neither JSON nor base64(zlib(JSON))"}
		}
		zr, err := zlib.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, &envelope.Error{Msg: "store body: base64 but not zlib: " + err.Error()}
		}
		defer zr.Close()
		body, err = io.ReadAll(io.LimitReader(zr, max+1))
		if err != nil {
			return nil, &envelope.Error{Msg: "store body: zlib: " + err.Error()}
		}
		if int64(len(body)) > max {
			return nil, &envelope.Error{Msg: fmt.Sprintf("store body is over the %d byte limit once decompressed", max), Too: true}
		}
	}
	var head struct {
		EventID string `json:"event_id"`
		Type    string `json:"type"`
	}
	if len(body) == 0 || body[0] != '{' || json.Unmarshal(body, &head) != nil {
		return nil, &envelope.Error{Msg: "store body: invalid JSON: want one event object"}
	}
	typ := "event"
	if head.Type == "transaction" {
		typ = "transaction"
	}
	hdr, _ := json.Marshal(map[string]string{"event_id": head.EventID})
	return envelope.Encode(hdr, []envelope.Item{{Type: typ, Payload: body}}), nil
}

// checkItems validates item payloads (nothing is stored from a request
// with a broken item) and settles the event id: the envelope header's, else
// the event's own, else a new one written into the header.
func checkItems(env *envelope.Envelope, body []byte) (string, []byte, *ingestError) {
	for i, it := range env.Items {
		switch it.Type {
		case "event", "transaction", "session", "sessions", "client_report", "check_in", "user_report", "feedback":
			p := bytes.TrimSpace(it.Payload)
			if len(p) == 0 || p[0] != '{' && !(it.Type == "user_report" && p[0] == '[') || !json.Valid(p) {
				return "", nil, fail(http.StatusBadRequest, "item %d (%s): invalid JSON: want an object", i+1, it.Type)
			}
		}
	}
	ev := env.EventItem()
	id := envelope.EventID(env.Header.EventID)
	if ev == nil {
		if id == "" {
			for _, it := range env.Items {
				if it.Type == "attachment" {
					return "", nil, fail(http.StatusBadRequest, "attachment without an event_id in the envelope header")
				}
			}
		}
		return id, body, nil
	}
	if id == "" {
		var head struct {
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal(ev.Payload, &head)
		id = envelope.EventID(head.EventID)
	}
	if id == "" {
		id = randomHex(16)
	}
	if id != env.Header.EventID {
		h := map[string]any{}
		_ = json.Unmarshal(env.Header.Raw, &h)
		h["event_id"] = id
		hb, _ := json.Marshal(h)
		_, rest, _ := bytes.Cut(body, []byte("\n"))
		body = append(append(hb, '\n'), rest...)
	}
	return id, body, nil
}

// limitedCategories are the rate-limit categories an envelope uses, as
// X-Sentry-Rate-Limits names them; "" when nothing in it is limited.
func limitedCategories(env *envelope.Envelope) string {
	for _, it := range env.Items {
		switch it.Type {
		case "event":
			return "error;default;security"
		case "transaction":
			return "transaction"
		}
	}
	return ""
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// publish puts the envelope on ERRORS_INGEST and waits for the ack.
func (s *Service) publish(ctx context.Context, projectID int64, publicKey, eventID string, body []byte, ip string) *ingestError {
	in := &errortrackv1.IngestedEnvelope{ProjectId: projectID, PublicKey: publicKey, Body: body, ReceivedAt: timestamppb.Now(), ClientIp: ip}
	ev := bus.NewEvent("errortrack.envelope", "", eventID, in)
	ev.Source = s.bus.Source()
	if s.tooBigForMessage(len(body)) {
		name, err := s.putBigEnvelope(ctx, ev.ID, body)
		if err != nil {
			s.log.Error("storing a large envelope", "project", projectID, "bytes", len(body), "err", err)
			return fail(http.StatusServiceUnavailable, "could not store the envelope durably, retry later")
		}
		in.Body, in.BodyObject = nil, name
	}
	m, err := bus.Encode(ctx, IngestSubject(projectID), ev)
	if err != nil {
		return fail(http.StatusInternalServerError, "encoding: %v", err)
	}
	if eventID != "" {
		// A resent event is stored once (JetStream dedup window).
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("et.%d.%s", projectID, eventID))
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.bus.JetStream().PublishMsg(pctx, m); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum") || strings.Contains(err.Error(), "maximum bytes") {
			return &ingestError{status: http.StatusTooManyRequests, retryAfter: 10 * time.Second, rateLimits: ":organization:backlog",
				detail: "the error intake is behind; retry later"}
		}
		s.log.Error("publishing an envelope", "project", projectID, "err", err)
		return fail(http.StatusServiceUnavailable, "could not store the envelope durably, retry later")
	}
	return nil
}

// dsnPrefixed matches an intake path under a DSN's path prefix: SDKs post
// to {DSN path}/api/{project_id}/envelope/, so a DSN such as
// https://key@host/sentry/7 (shiploop behind a proxy's /sentry, or an old
// DSN kept unchanged) arrives as /sentry/api/7/envelope/.
var dsnPrefixed = regexp.MustCompile(`^/.+(/api/[^/]+/(?:envelope|store)/?)$`)

// StripDSNPrefix serves intake requests under any DSN path prefix as the
// plain /api/... routes; other requests pass unchanged. Wrap the server's
// whole handler with it, outside any token check: the intake authenticates
// by its own keys.
func StripDSNPrefix(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodPost || r.Method == http.MethodOptions) && !strings.HasPrefix(r.URL.Path, "/api/") {
			if m := dsnPrefixed.FindStringSubmatch(r.URL.Path); m != nil {
				r2 := r.Clone(r.Context())
				r2.URL.Path, r2.URL.RawPath = m[1], ""
				h.ServeHTTP(w, r2)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
