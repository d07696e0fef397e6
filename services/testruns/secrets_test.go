package testruns

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestTestJobSecretNames: the secret names of the plan's steps reach the
// queued test jobs' steps, where the agent asks builds for the values;
// the job this service stores (and queues) holds no value.
func TestTestJobSecretNames(t *testing.T) {
	storetest.Engines(t, "testruns", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		plan := &eventsv1.TestPlan{
			Steps: []*eventsv1.Step{
				{Name: "unit", Commands: []string{"go test ./..."}},
				{Name: "integration", Commands: []string{"make it"}, Secrets: []string{"API_TOKEN", "DB_PASSWORD"}},
			},
			Shards: 2,
			Vcs:    "hg",
		}
		h.build("bs1", "acme/secret", "c1", plan, true)
		var specs [][]byte
		eventually(t, "two test jobs stored", func() bool {
			specs = specs[:0]
			rows, err := h.svc.db.Query(`SELECT spec FROM test_jobs j JOIN test_runs r ON r.id = j.run_id WHERE r.build_id = 'bs1'`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var b []byte
				if err := rows.Scan(&b); err != nil {
					t.Fatal(err)
				}
				specs = append(specs, b)
			}
			return len(specs) == 2
		})
		for _, spec := range specs {
			job := &eventsv1.Job{}
			if err := proto.Unmarshal(spec, job); err != nil {
				t.Fatal(err)
			}
			if len(job.Steps) != 2 || len(job.Steps[0].Secrets) != 0 || strings.Join(job.Steps[1].Secrets, ",") != "API_TOKEN,DB_PASSWORD" {
				t.Errorf("job %s steps %v: want integration to name API_TOKEN,DB_PASSWORD", job.JobId, job.Steps)
			}
			if len(job.Secrets) != 0 {
				t.Errorf("the stored test job holds secret values: %v", job.Secrets)
			}
			// A Mercurial repository's test jobs are cloned with hg.
			if job.GetVcs() != "hg" {
				t.Errorf("test job vcs %q, want the plan's hg", job.GetVcs())
			}
		}
	})
}
