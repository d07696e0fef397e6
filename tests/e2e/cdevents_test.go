package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// cdeventsSpec is the shared cdevents/spec v0.5.1 copy (schemas, conformance).
const cdeventsSpec = "../../../shared/testdata/cdevents"

// cdeventSink records CDEvents POSTed by the bridge.
type cdeventSink struct {
	mu    sync.Mutex
	types []string
	ids   map[string]bool
}

func (s *cdeventSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ce struct {
		Context struct{ Type, ID string }
	}
	if err := json.Unmarshal(body, &ce); err != nil || r.Header.Get("ce-type") != ce.Context.Type {
		http.Error(w, "not a binary-mode CDEvent", 400)
		return
	}
	s.mu.Lock()
	s.types = append(s.types, ce.Context.Type)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *cdeventSink) has(typ string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.types {
		if t == typ {
			return true
		}
	}
	return false
}

func TestCDEventsOutAndIn(t *testing.T) {
	sink := &cdeventSink{}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	schemas, _ := filepath.Abs(cdeventsSpec)
	inst := startUp(t, "--cdevents-schemas", schemas, "--cdevents-sink", srv.URL)

	// Out: a push becomes change.merged, build.queued/started/finished and
	// artifact.packaged at the sink; the server validated each against its
	// schema before sending (an invalid one would go to the DLQ instead).
	repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig, "src/app.txt": "v1\n"})
	sha := repo.git("rev-parse", "HEAD")
	secret := inst.register(t, "acme/cde", repo)
	if res := inst.push(t, "acme/cde", secret, "refs/heads/main", zero, sha); res.Status != 202 {
		t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, want := range []string{"dev.cdevents.change.merged.0.3.0", "dev.cdevents.build.queued.0.3.0", "dev.cdevents.build.started.0.3.0", "dev.cdevents.build.finished.0.3.0"} {
		for !sink.has(want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s at the sink; got %v", want, sink.types)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// In: an external service.deployed (structured mode) becomes deploy.finished.
	raw, err := os.ReadFile(filepath.Join(cdeventsSpec, "conformance", "service_deployed.json"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": "ext-1", "source": "/argocd", "type": "dev.cdevents.service.deployed.0.3.0", "data": json.RawMessage(raw)})
	w := watchSince(t, inst, "mySubject123", time.Now().Add(-time.Minute))
	post := func(b []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, inst.HTTPURL+"/cdevents", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	if code, out := post(body); code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, out)
	}
	evs := w.until("deploy.finished", 30*time.Second)
	d := payload(t, evs[len(evs)-1], &eventsv1.DeployFinished{})
	if d.GetDeploy().GetEnvironment() != "test123" || d.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED {
		t.Fatalf("deploy.finished = %v", d)
	}

	// A CDEvent failing its schema: 400 naming the problem, and counted.
	bad, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": "ext-2", "source": "/argocd", "type": "dev.cdevents.service.deployed.0.3.0",
		"data": json.RawMessage(strings.Replace(string(raw), `"artifactId"`, `"artifact"`, 1))})
	if code, out := post(bad); code != http.StatusBadRequest || !strings.Contains(out, "artifactId") {
		t.Fatalf("invalid CDEvent = %d %s, want 400 naming artifactId", code, out)
	}
	resp, err := http.Get(inst.HTTPURL + "/cdevents")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats struct{ Accepted, Rejected int64 }
	_ = json.NewDecoder(resp.Body).Decode(&stats)
	if stats.Accepted != 1 || stats.Rejected != 1 {
		t.Fatalf("stats %+v, want 1 accepted and 1 rejected", stats)
	}
}

// watchSince is inst.watch with a replay start: WatchEvents sends its
// header before its consumer exists, so an event published right after
// the header can be missed by a watch of new events only.
func watchSince(t *testing.T, inst *instance, repo string, since time.Time) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := inst.client.WatchEvents(ctx, &buildsv1.WatchEventsRequest{Repository: repo, Since: timestamppb.New(since)})
	if err != nil {
		cancel()
		t.Fatalf("WatchEvents: %v", err)
	}
	w := &watcher{t: t, events: make(chan *eventsv1.Event, 1024), cancel: cancel}
	go func() {
		defer close(w.events)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			w.events <- r.GetEvent()
		}
	}()
	t.Cleanup(cancel)
	return w
}
