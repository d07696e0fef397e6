// Secret values for jobs that builds did not queue. Test jobs (testruns)
// and deploy jobs (deploys) name their steps' secrets only: those services
// may run in other processes, with other databases, and must never store a
// value. The agent asks here, by core NATS request/reply, when such a job
// starts; the value then lives only in the agent's memory and the step's
// environment, masked in its log like a build job's.

package builds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// secretsQueue is the queue group of the answering subscription: with
// several builds replicas one of them answers each request.
const secretsQueue = "builds"

// serveSecrets answers ResolveSecretsRequests on bus.SecretsSubject until
// ctx ends.
func (s *Service) serveSecrets(ctx context.Context) error {
	nc := s.bus.Conn()
	sub, err := nc.QueueSubscribe(bus.SecretsSubject, secretsQueue, func(m *nats.Msg) {
		resp := s.resolveSecrets(ctx, m.Data)
		data, err := proto.Marshal(resp)
		if err != nil {
			s.log.Error("encoding secrets answer", "err", err)
			return
		}
		if err := m.Respond(data); err != nil {
			s.log.Warn("answering a secrets request", "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("builds: subscribing to %s: %w", bus.SecretsSubject, err)
	}
	// The subscription is in place on the server before anyone is told the
	// service is up; agents that asked earlier retry.
	if err := nc.Flush(); err != nil {
		s.log.Warn("flushing the secrets subscription", "err", err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}

// resolveSecrets reads the values a request asks for: all of them, or an
// error naming each one the repository lacks and how to set it.
func (s *Service) resolveSecrets(ctx context.Context, data []byte) *eventsv1.ResolveSecretsResponse {
	var req eventsv1.ResolveSecretsRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return &eventsv1.ResolveSecretsResponse{Error: fmt.Sprintf("malformed secrets request: %v", err)}
	}
	repo := req.GetRepository()
	names := slices.Compact(slices.Sorted(slices.Values(req.GetNames())))
	if repo == "" || len(names) == 0 {
		return &eventsv1.ResolveSecretsResponse{Error: "a secrets request needs a repository and at least one name"}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if refused := s.checkJob(ctx, repo, req.GetJobId(), names); refused != nil {
		return refused
	}
	resp := &eventsv1.ResolveSecretsResponse{Values: make(map[string]string, len(names))}
	for _, n := range names {
		var v string
		err := s.db.QueryRowContext(ctx, `SELECT value FROM secrets WHERE repository = $1 AND name = $2`, repo, n).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			resp.Missing = append(resp.Missing, n)
		case err != nil:
			s.log.Warn("reading secrets", "job", req.GetJobId(), "repository", repo, "err", err)
			return &eventsv1.ResolveSecretsResponse{Temporary: true, Error: fmt.Sprintf("the builds service could not read the secrets of %s: %v", repo, err)}
		default:
			resp.Values[n] = v
		}
	}
	if len(resp.Missing) > 0 {
		s.log.Info("secrets asked for are not set", "job", req.GetJobId(), "repository", repo, "missing", resp.Missing)
		return &eventsv1.ResolveSecretsResponse{Missing: resp.Missing, Error: missingSecrets(repo, resp.Missing)}
	}
	// Names only: an audit trail of which job got which secrets.
	s.log.Info("secrets handed out", "job", req.GetJobId(), "repository", repo, "names", names)
	return resp
}

// checkJob refuses a request that does not come for a job of repo that is
// queued or running (in the JOBS stream) and declares every one of names in
// its steps: a client on the bus cannot ask for any repository's secrets,
// only for those of a job in flight, while it is. It returns nil to go on.
func (s *Service) checkJob(ctx context.Context, repo, jobID string, names []string) *eventsv1.ResolveSecretsResponse {
	if jobID == "" {
		return &eventsv1.ResolveSecretsResponse{Error: "a secrets request needs the id of the job it is for"}
	}
	ev, ok, err := s.bus.LiveJob(ctx, repo, jobID)
	if err != nil {
		s.log.Warn("checking the job of a secrets request", "job", jobID, "repository", repo, "err", err)
		return &eventsv1.ResolveSecretsResponse{Temporary: true, Error: fmt.Sprintf("the builds service could not check job %s of %s: %v", jobID, repo, err)}
	}
	job, _ := ev.Data.(*eventsv1.Job)
	if !ok || job == nil || job.GetJobId() != jobID || job.GetRepository() != repo {
		s.log.Warn("secrets refused: the job is not queued or running", "job", jobID, "repository", repo, "names", names)
		return &eventsv1.ResolveSecretsResponse{Error: fmt.Sprintf("job %s of %s is not queued or running: secrets go only to a job in flight that declares them", jobID, repo)}
	}
	declared := map[string]bool{}
	for _, st := range job.GetSteps() {
		for _, n := range st.GetSecrets() {
			declared[n] = true
		}
	}
	var undeclared []string
	for _, n := range names {
		if !declared[n] {
			undeclared = append(undeclared, n)
		}
	}
	if len(undeclared) > 0 {
		s.log.Warn("secrets refused: not declared by the job", "job", jobID, "repository", repo, "undeclared", undeclared)
		return &eventsv1.ResolveSecretsResponse{Error: fmt.Sprintf("no step of job %s of %s declares %s %s", jobID, repo, plural(len(undeclared), "secret", "secrets"), strings.Join(undeclared, ", "))}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// missingSecrets says which secrets a repository lacks and how to set them.
func missingSecrets(repo string, names []string) string {
	fixes := make([]string, len(names))
	for i, n := range names {
		fixes[i] = fmt.Sprintf("shiploop secret set %s %s", repo, n)
	}
	if len(names) == 1 {
		return fmt.Sprintf("secret %s is not set for %s (%s)", names[0], repo, fixes[0])
	}
	return fmt.Sprintf("secrets %s are not set for %s (%s)", strings.Join(names, ", "), repo, strings.Join(fixes, "; "))
}
