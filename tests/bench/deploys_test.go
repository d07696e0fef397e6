package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

const deployBenchConfig = `steps:
  - name: build
    commands: ["true"]
environments:
  - name: acceptance
    auto: true
    steps:
      - name: deploy
        commands: ["true"]
`

// BenchmarkDeployStart measures, on `shiploop up`, the platform time from a
// successful build (build.finished, no gate configured) to the first step of
// the deploy job running on the agent (its StepResult.started_at), one push
// after another so every deploy finds the environment's lock free.
// cd tests && go test -run '^$' -bench DeployStart -benchtime 1x ./bench/
func BenchmarkDeployStart(b *testing.B) {
	n := 40
	if v, err := strconv.Atoi(os.Getenv("SHIPLOOP_BENCH_DEPLOYS")); err == nil && v > 0 {
		n = v
	}
	cpu := startCPU()
	inst := startUp(b)
	repo := newRepo(b, map[string]string{".shiploop.yml": deployBenchConfig})
	secret := inst.register(b, "bench/deploy", repo)
	shas := repo.commits(n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := inst.client.WatchEvents(ctx, &buildsv1.WatchEventsRequest{Repository: "bench/deploy"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Header(); err != nil {
		b.Fatal(err)
	}
	type mark struct {
		built   time.Time
		started time.Time
	}
	byBuild := map[string]*mark{}
	deployJobs := map[string]string{} // job -> build
	var samples []time.Duration
	before := zero
	for i, sha := range shas {
		if _, err := inst.push("bench/deploy", secret, fmt.Sprintf("d-%d", i), "refs/heads/main", before, sha); err != nil {
			b.Fatal(err)
		}
		before = sha
		// Read events until this commit's deploy job has finished.
		deadline := time.After(60 * time.Second)
	wait:
		for {
			type recv struct {
				r   *buildsv1.WatchEventsResponse
				err error
			}
			ch := make(chan recv, 1)
			go func() { r, err := st.Recv(); ch <- recv{r, err} }()
			var got recv
			select {
			case got = <-ch:
			case <-deadline:
				b.Fatalf("deploy %d of %d did not finish within 60s", i+1, n)
			}
			if got.err != nil {
				b.Fatal(got.err)
			}
			ev := got.r.GetEvent()
			switch ev.GetType() {
			case "dev.shiploop.build.finished.v1":
				var bf eventsv1.BuildFinished
				if err := ev.GetData().UnmarshalTo(&bf); err != nil {
					b.Fatal(err)
				}
				byBuild[bf.GetBuildId()] = &mark{built: ev.GetTime().AsTime()}
			case "dev.shiploop.job.queued.v1":
				var q eventsv1.JobQueued
				if err := ev.GetData().UnmarshalTo(&q); err != nil {
					b.Fatal(err)
				}
				if q.GetKind() == "deploy" {
					deployJobs[q.GetJobId()] = q.GetBuildId()
				}
			case "dev.shiploop.job.finished.v1":
				var jf eventsv1.JobFinished
				if err := ev.GetData().UnmarshalTo(&jf); err != nil {
					b.Fatal(err)
				}
				build, ok := deployJobs[jf.GetJobId()]
				if !ok {
					continue
				}
				if jf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || len(jf.GetSteps()) == 0 {
					b.Fatalf("deploy job %s: %v %s", jf.GetJobId(), jf.GetStatus(), jf.GetError())
				}
				m := byBuild[build]
				if m == nil {
					b.Fatalf("deploy job of build %s before its build.finished", build)
				}
				m.started = jf.GetSteps()[0].GetStartedAt().AsTime()
				samples = append(samples, m.started.Sub(m.built))
				break wait
			}
		}
	}
	s := summarize(samples)
	b.ReportMetric(float64(s.p99)/float64(time.Millisecond), "p99-ms")
	body := fmt.Sprintf(`%d pushes one after another to a repository with one automatic environment (no gate, no verification), `+"`shiploop up`"+` (SQLite, embedded NATS, built-in agent). From build.finished (its event time) to the deploy job's first step starting on the agent (the step's started_at).

| measure | result | goal | verdict |
|---|---|---|---|
| build finished → deploy's first step running, p50 / p90 / p99 / max | %s / %s / %s / %s | p99 ≤ 100 ms | %s |

%s`, n, ms(s.median), ms(s.p90), ms(s.p99), ms(s.max), verdict(s.p99 <= 100*time.Millisecond), measured(cpu, 0))
	if err := writeSection("deploys-start", body); err != nil {
		b.Fatal(err)
	}
}
