package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// secretsAttempt bounds one request for secrets; a job asks again (up to
// Config.SecretsWait) when builds did not answer in time.
const secretsAttempt = 5 * time.Second

// errSecretsUnavailable: builds gave no definite answer (down, restarting,
// its database unreachable) within Config.SecretsWait. The job is given
// back to the queue rather than failed, until its last delivery.
var errSecretsUnavailable = errors.New("the builds service did not answer")

// neededSecrets are the names the job's steps ask for that the job does
// not carry, sorted: none for a build job (builds puts the values in it),
// the steps' secrets for test and deploy jobs, whose services never hold a
// value.
func neededSecrets(job *eventsv1.Job) []string {
	var out []string
	for _, st := range job.GetSteps() {
		for _, n := range st.GetSecrets() {
			if _, ok := job.GetSecrets()[n]; !ok {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// resolveSecrets asks the builds service for the values of the job's
// needed secrets (core NATS request/reply on bus.SecretsSubject) and puts
// them into the job, which only this agent's memory holds, so they are
// masked and reach the steps as a build job's do. While builds does not
// answer, or answers that it cannot read its database now, it asks again
// until Config.SecretsWait has passed. The error says which secret is
// missing and how to set it, or that builds did not answer.
func (r *jobRun) resolveSecrets(ctx context.Context) error {
	job := r.job
	names := neededSecrets(job)
	if len(names) == 0 {
		return nil
	}
	req, err := proto.Marshal(&eventsv1.ResolveSecretsRequest{Repository: job.Repository, Names: names, JobId: job.JobId})
	if err != nil {
		return err
	}
	nc := r.a.cfg.Bus.Conn()
	wait := r.a.cfg.SecretsWait
	deadline := time.Now().Add(wait)
	delay := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, min(secretsAttempt, max(time.Until(deadline), 100*time.Millisecond)))
		msg, err := nc.RequestWithContext(actx, bus.SecretsSubject, req)
		cancel()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err == nil {
			resp := &eventsv1.ResolveSecretsResponse{}
			if uerr := proto.Unmarshal(msg.Data, resp); uerr != nil {
				return fmt.Errorf("reading the builds service's answer: %w", uerr)
			}
			switch {
			case resp.GetError() == "":
				if job.Secrets == nil {
					job.Secrets = make(map[string]string, len(names))
				}
				for _, n := range names {
					v, ok := resp.GetValues()[n]
					if !ok {
						return fmt.Errorf("the builds service answered without secret %s of %s", n, job.Repository)
					}
					job.Secrets[n] = v
				}
				return nil
			case !resp.GetTemporary():
				return errors.New(resp.GetError())
			}
			err = errors.New(resp.GetError())
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w with the values of secrets %s of %s within %s: %v", errSecretsUnavailable, strings.Join(names, ", "), job.Repository, wait, err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(min(delay, time.Until(deadline))):
		}
		delay = min(delay*2, 2*time.Second)
	}
}
