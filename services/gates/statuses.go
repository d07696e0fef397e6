package gates

import (
	"context"
	"net/url"
	"strings"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/forgestatus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

type postedStatus struct {
	buildID  string
	revision int32
}

// postStatus posts the shiploop/gate status of an evaluation, unless a
// later revision is already on the forge. It runs outside the transaction;
// failures retry with back-off, a refusal for good goes to the DLQ.
func (s *Service) postStatus(ctx context.Context, ev bus.Event) (any, error) {
	d, ok := ev.Data.(*eventsv1.GateEvaluated)
	if !ok || d.GetCommit() == "" {
		return nil, nil
	}
	var posted int32
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(revision), 0) FROM gate_status_posted WHERE build_id = $1`, d.GetBuildId()).Scan(&posted)
	if err != nil {
		return nil, err
	}
	if posted >= d.GetRevision() {
		return nil, nil
	}
	f, err := s.cfg.Forges.ForgeSettings(ctx, d.GetRepository())
	if err != nil {
		return nil, err
	}
	if f.Kind == "" {
		return nil, nil // no forge configured: nothing to post
	}
	st := forgestatus.Status{SHA: d.GetCommit(), Ref: d.GetRef(), Context: StatusContext, TargetURL: s.buildURL(d.GetBuildId()), Description: d.GetSummary()}
	switch d.GetStatus() {
	case eventsv1.GateStatus_GATE_STATUS_PASSED:
		st.State = forgestatus.Success
	case eventsv1.GateStatus_GATE_STATUS_FAILED:
		st.State = forgestatus.Failure
	default:
		st.State = forgestatus.Error
	}
	log := s.log.With("repository", d.GetRepository(), "build", d.GetBuildId(), "forge", f.Kind, "commit", d.GetCommit(), "state", st.State)
	client, err := forgestatus.New(f.Kind, forgestatus.Config{APIURL: f.APIURL, Repo: f.Repo, Token: f.Token, HTTPClient: s.hc, UserAgent: "shiploop"})
	if err == nil {
		err = client.SetStatus(ctx, st)
	}
	switch {
	case err == nil:
		log.Info("gate status posted")
		return &postedStatus{buildID: d.GetBuildId(), revision: d.GetRevision()}, nil
	case forgestatus.IsPermanent(err):
		log.Error("gate status refused; not retrying (check the repository's forge settings: shiploop repo add --forge ...)", "err", err)
		return nil, bus.Permanent(err)
	}
	return nil, err
}

func (s *Service) recordStatus(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	p, ok := tx.Prepared.(*postedStatus)
	if !ok || p == nil {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO gate_status_posted (build_id, revision) VALUES ($1, $2)
		ON CONFLICT (build_id) DO UPDATE SET revision = excluded.revision WHERE gate_status_posted.revision < excluded.revision`, p.buildID, p.revision)
	return err
}

func (s *Service) buildURL(id string) string {
	if s.cfg.PublicURL == "" {
		return ""
	}
	return strings.TrimRight(s.cfg.PublicURL, "/") + "/builds/" + url.PathEscape(id)
}
