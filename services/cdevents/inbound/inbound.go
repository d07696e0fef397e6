// Package inbound reads CDEvents that other tools send shiploop: the
// CloudEvents HTTP binding (ParseHTTP) and the mapping to the internal event
// shiploop publishes for one (Map). It depends on no bus or store, so its
// fuzz test links little besides the parser.
package inbound

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// ErrNotCloudEvent is a request that is neither a structured nor a binary
// CloudEvent.
var ErrNotCloudEvent = errors.New("not a CloudEvent")

// Envelope is the CloudEvents side of a received CDEvent.
type Envelope struct {
	SpecVersion, ID, Source, Type string
}

// ParseHTTP reads a CloudEvent from an HTTP request (the CloudEvents HTTP
// binding): structured mode when Content-Type is
// application/cloudevents+json, binary mode (ce-* headers, the body is
// the data) otherwise. It returns the envelope and the CDEvent JSON.
func ParseHTTP(h http.Header, body []byte) (Envelope, []byte, error) {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if strings.HasPrefix(strings.ToLower(mt), "application/cloudevents") {
		if strings.ToLower(mt) != "application/cloudevents+json" {
			return Envelope{}, nil, fmt.Errorf("%w: structured mode %q is not supported, send application/cloudevents+json", ErrNotCloudEvent, mt)
		}
		return parseStructured(body)
	}
	env := Envelope{SpecVersion: h.Get("ce-specversion"), ID: h.Get("ce-id"), Source: h.Get("ce-source"), Type: h.Get("ce-type")}
	if env.SpecVersion == "" {
		return Envelope{}, nil, fmt.Errorf("%w: no ce-specversion header and Content-Type %q is not application/cloudevents+json", ErrNotCloudEvent, h.Get("Content-Type"))
	}
	for _, p := range []*string{&env.ID, &env.Source, &env.Type} {
		if v, err := url.PathUnescape(*p); err == nil {
			*p = v
		}
	}
	if err := env.check(); err != nil {
		return Envelope{}, nil, err
	}
	if mt != "" && mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return Envelope{}, nil, fmt.Errorf("%w: data content type %q: a CDEvent is JSON (application/json)", ErrNotCloudEvent, mt)
	}
	return env, body, nil
}

func (e Envelope) check() error {
	var missing []string
	for name, v := range map[string]string{"specversion": e.SpecVersion, "id": e.ID, "source": e.Source, "type": e.Type} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing attribute(s) %s", ErrNotCloudEvent, strings.Join(missing, ", "))
	}
	if e.SpecVersion != "1.0" {
		return fmt.Errorf("%w: specversion %q, want 1.0", ErrNotCloudEvent, e.SpecVersion)
	}
	return nil
}

func parseStructured(body []byte) (Envelope, []byte, error) {
	var ce struct {
		SpecVersion     string          `json:"specversion"`
		ID              string          `json:"id"`
		Source          string          `json:"source"`
		Type            string          `json:"type"`
		DataContentType string          `json:"datacontenttype"`
		Data            json.RawMessage `json:"data"`
		DataBase64      string          `json:"data_base64"`
	}
	if err := json.Unmarshal(body, &ce); err != nil {
		return Envelope{}, nil, fmt.Errorf("%w: structured body: %v", ErrNotCloudEvent, err)
	}
	env := Envelope{SpecVersion: ce.SpecVersion, ID: ce.ID, Source: ce.Source, Type: ce.Type}
	if err := env.check(); err != nil {
		return Envelope{}, nil, err
	}
	data := []byte(ce.Data)
	switch {
	case ce.DataBase64 != "" && len(ce.Data) > 0:
		return Envelope{}, nil, fmt.Errorf("%w: both data and data_base64 are set", ErrNotCloudEvent)
	case ce.DataBase64 != "":
		b, err := base64.StdEncoding.DecodeString(ce.DataBase64)
		if err != nil {
			return Envelope{}, nil, fmt.Errorf("%w: data_base64: %v", ErrNotCloudEvent, err)
		}
		data = b
	case len(data) > 0 && data[0] == '"':
		// data as a JSON string holding the CDEvent (some producers do this).
		var s string
		if err := json.Unmarshal(data, &s); err == nil {
			data = []byte(s)
		}
	}
	if len(data) == 0 || string(data) == "null" {
		return Envelope{}, nil, fmt.Errorf("%w: no data: the CDEvent goes in \"data\"", ErrNotCloudEvent)
	}
	return env, data, nil
}

// received is the part of a validated CDEvent the mapping reads.
type received struct {
	Context struct {
		ID        string `json:"id"`
		Source    string `json:"source"`
		Type      string `json:"type"`
		Timestamp string `json:"timestamp"`
		ChainID   string `json:"chainId"`
	} `json:"context"`
	Subject struct {
		ID      string `json:"id"`
		Source  string `json:"source"`
		Content struct {
			Outcome      string `json:"outcome"`
			PipelineName string `json:"pipelineName"`
			TaskName     string `json:"taskName"`
			URI          string `json:"uri"`
			ArtifactID   string `json:"artifactId"`
			Environment  struct {
				ID string `json:"id"`
			} `json:"environment"`
			Repository struct {
				ID string `json:"id"`
			} `json:"repository"`
			TestSuite struct{ Name, ID string } `json:"testSuite"`
		} `json:"content"`
	} `json:"subject"`
	CustomData json.RawMessage `json:"customData"`
}

// Event is the internal event shiploop publishes for a received CDEvent.
type Event struct {
	ID, Type, Repository, Subject, ChainID string
	Time                                   time.Time
	Data                                   proto.Message
}

// Kind is a CDEvent type's "<subject>.<predicate>" ("service.deployed");
// custom events give "<tool>-<subject>.<predicate>".
func Kind(cdeventType string) string {
	t := strings.TrimPrefix(strings.TrimPrefix(cdeventType, "dev.cdevents."), "dev.cdeventsx.")
	parts := strings.Split(t, ".")
	if len(parts) < 2 {
		return t
	}
	return parts[0] + "." + parts[1]
}

// Map maps a validated CDEvent from another tool to the internal event
// shiploop publishes for it:
//
//   - service.deployed / service.upgraded -> deploy.finished (succeeded, kind
//     "external"), service.rolledback -> deploy.finished (succeeded, kind
//     "rollback"): the dashboards' DORA figures and the metrics service
//     count them like shiploop's own deploys. The service id is the
//     repository (or customData.repository when given), the release the
//     purl's version, the commit customData.commit when given (DORA's lead
//     time needs it).
//   - everything else -> "external.<subject>_<predicate>" (ExternalEvent),
//     e.g. external.pipelinerun_finished for Tekton, kept on the EVENTS
//     stream for watchers, dashboards and future consumers. An outside
//     pipeline run is not turned into build.finished: gates and deploys
//     act on build.finished and must not judge or ship builds shiploop
//     never ran.
//
// The internal id is derived from the CDEvent's source and id, so a
// retransmission is dropped by JetStream deduplication.
func Map(raw []byte) (Event, error) {
	var r received
	if err := json.Unmarshal(raw, &r); err != nil {
		return Event{}, fmt.Errorf("cdevent: %w", err)
	}
	at, err := time.Parse(time.RFC3339Nano, r.Context.Timestamp)
	if err != nil {
		at = time.Now().UTC()
	}
	var custom struct {
		Repository string `json:"repository"`
		Commit     string `json:"commit"`
	}
	_ = json.Unmarshal(r.CustomData, &custom) // customData is free-form; only string repository and commit are read
	id := uuid.NewSHA1(uuid.NameSpaceURL, []byte("cdevent:"+r.Context.Source+"\x00"+r.Context.ID)).String()
	kind := Kind(r.Context.Type)
	c := r.Subject.Content
	switch kind {
	case "service.deployed", "service.upgraded", "service.rolledback":
		repo := custom.Repository
		if repo == "" {
			repo = r.Subject.ID
		}
		// A rollback is itself a successful deploy of an older release, of
		// kind "rollback", as the deploys service records its own.
		depKind := "external"
		if kind == "service.rolledback" {
			depKind = "rollback"
		}
		d := &eventsv1.DeployFinished{
			Deploy: &eventsv1.DeployRef{DeployId: "cdevent-" + id, Repository: repo, Environment: c.Environment.ID,
				Release: PurlVersion(c.ArtifactID), Commit: custom.Commit, Kind: depKind, TriggeredBy: r.Context.Source},
			Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED, Reason: "reported by " + r.Context.Source + " (" + r.Context.Type + ")", FinishedAt: timestamppb.New(at),
		}
		return Event{ID: id, Type: "deploy.finished", Repository: repo, Subject: d.Deploy.DeployId, ChainID: r.Context.ChainID, Time: at, Data: d}, nil
	}
	name := c.PipelineName
	if name == "" {
		name = c.TaskName
	}
	if name == "" {
		name = c.TestSuite.Name
	}
	repo := custom.Repository
	if repo == "" {
		repo = c.Repository.ID
	}
	x := &eventsv1.ExternalEvent{Type: r.Context.Type, Source: r.Context.Source, Id: r.Context.ID, SubjectId: r.Subject.ID, Kind: kind,
		Outcome: c.Outcome, Name: name, Uri: c.URI, Environment: c.Environment.ID, ArtifactId: c.ArtifactID, Repository: repo,
		Timestamp: timestamppb.New(at), Cdevent: raw}
	typ := "external." + strings.ReplaceAll(tokenSafe(kind), ".", "_")
	return Event{ID: id, Type: typ, Repository: repo, Subject: r.Subject.ID, ChainID: r.Context.ChainID, Time: at, Data: x}, nil
}

// tokenSafe keeps a kind usable as one subject token.
func tokenSafe(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteRune(c)
		} else {
			b.WriteRune('_')
		}
	}
	return b.String()
}

// PurlVersion is the version of a purl ("pkg:oci/app@sha256%3Aab" ->
// "sha256:ab"), or the whole id when it has none.
func PurlVersion(p string) string {
	i := strings.LastIndex(p, "@")
	if i < 0 {
		return p
	}
	v := p[i+1:]
	if j := strings.IndexAny(v, "?#"); j >= 0 {
		v = v[:j]
	}
	if u, err := url.PathUnescape(v); err == nil {
		v = u
	}
	return v
}
