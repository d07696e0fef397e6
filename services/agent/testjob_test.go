package agent

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestTestJobReports: a test job whose tests fail still has its reports
// collected and listed in job.finished, with the workspace as a path prefix.
func TestTestJobReports(t *testing.T) {
	r := newRig(t)
	dir, sha := repo(t)
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b9", Kind: "test", Repository: "acme/tests", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute),
		Steps: []*eventsv1.Step{{Name: "test", Commands: []string{
			`mkdir -p out && echo '<testsuite><testcase name="a"><failure/></testcase></testsuite>' > out/TEST-a.xml`,
			`printf 'mode: set\n%s/a.go:1.1,2.2 1 1\n' "$PWD" > cover.out`,
			"exit 1",
		}}},
		Test: &eventsv1.TestSpec{Reports: &eventsv1.TestReportGlobs{Junit: []string{"out/*.xml", "missing/*.xml"}, Coverage: []string{"cover.out"}}},
	}
	_, fin := r.run(job)
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_FAILURE {
		t.Fatalf("status %v", fin.GetStatus())
	}
	got := map[string]*eventsv1.ReportFile{}
	for _, rf := range fin.GetReports() {
		got[rf.GetKind()+":"+rf.GetName()] = rf
	}
	j, c := got["junit:out/TEST-a.xml"], got["coverage:cover.out"]
	if j == nil || c == nil || len(got) != 2 {
		t.Fatalf("reports %v", fin.GetReports())
	}
	if len(c.GetPathPrefixes()) == 0 || !strings.Contains(c.GetPathPrefixes()[0], "/") {
		t.Errorf("prefixes %v", c.GetPathPrefixes())
	}
	obs, err := artifactStore(context.Background(), r.bus)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := obs.Get(context.Background(), j.GetKey())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(obj)
	obj.Close()
	if !strings.Contains(string(b), `<testcase name="a">`) {
		t.Errorf("stored report %q", b)
	}
}

// TestReportNotKeptErrorsTheJob: a test job whose report JetStream will not
// take (here a bucket too small for it) ends in error naming the report,
// after persist's retries, instead of succeeding with no report: a run
// without its report would read "no test report arrived".
func TestReportNotKeptErrorsTheJob(t *testing.T) {
	old := persistBudget
	persistBudget = 300 * time.Millisecond
	t.Cleanup(func() { persistBudget = old })
	r := newRig(t)
	if _, err := r.bus.JetStream().CreateObjectStore(t.Context(), jetstream.ObjectStoreConfig{Bucket: ArtifactBucket, MaxBytes: 1024}); err != nil {
		t.Fatal(err)
	}
	dir, sha := repo(t)
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b10", Kind: "test", Repository: "acme/tests", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute),
		Steps: []*eventsv1.Step{{Name: "test", Commands: []string{
			`mkdir -p out && { echo '<testsuite>'; for i in $(seq 200); do echo "<testcase name=\"t$i\"/>"; done; echo '</testsuite>'; } > out/TEST-a.xml`,
		}}},
		Test: &eventsv1.TestSpec{Reports: &eventsv1.TestReportGlobs{Junit: []string{"out/*.xml"}}},
	}
	_, fin := r.run(job)
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_ERROR {
		t.Fatalf("status %v (%q), want an error: the report was not kept", fin.GetStatus(), fin.GetError())
	}
	if !strings.Contains(fin.GetError(), "keeping junit report out/TEST-a.xml") || len(fin.GetReports()) != 0 {
		t.Fatalf("error %q, reports %v: want the report named and none listed", fin.GetError(), fin.GetReports())
	}
	if fin.GetFailedStep() != "" {
		t.Errorf("failed step %q: the step itself passed", fin.GetFailedStep())
	}
}
