package metrics

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/metrics/carbon"
)

// handleEvent turns one platform event into series under "shiploop." (and a
// deploy into a Graphite event). It runs once per event id: the inbox row is
// written in the same transaction as the handler's own rows. Points are
// written to Storage directly; a point is idempotent (same series, same
// time, same value), so a retry after a failed commit cannot skew a gauge.
// Counters add 1 per event and so rely on the inbox.
func (s *Service) handleEvent(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	at := ev.Time.Unix()
	repo := pathToken(ev.Repository)
	domain, event, _ := strings.Cut(ev.Type, ".")
	var pts []carbon.Point
	count := func(name string) {
		s.st.Incr(name, at, 1)
	}
	count(fmt.Sprintf("shiploop.events.%s.%s.%s.count", pathToken(domain), pathToken(event), repo))
	switch d := ev.Data.(type) {
	case *eventsv1.BuildCreated:
		if _, err := tx.ExecContext(ctx, `INSERT INTO build_times (build_id, repository, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (build_id) DO UPDATE SET created_at = excluded.created_at`, d.GetBuildId(), d.GetRepository(), d.GetCreatedAt().AsTime().UnixNano()); err != nil {
			return fmt.Errorf("recording build %s: %w", d.GetBuildId(), err)
		}
	case *eventsv1.BuildStarted:
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT created_at FROM build_times WHERE build_id = $1`, d.GetBuildId()).Scan(&created)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("reading build %s: %w", d.GetBuildId(), err)
		case created > 0:
			q := float64(d.GetStartedAt().AsTime().UnixNano()-created) / 1e9
			pts = append(pts, carbon.Point{Name: "shiploop.builds." + repo + ".queue_time", Value: q, Timestamp: d.GetStartedAt().AsTime().Unix()})
		}
	case *eventsv1.BuildFinished:
		fin := d.GetFinishedAt().AsTime().Unix()
		if d.GetDuration() != nil {
			pts = append(pts, carbon.Point{Name: "shiploop.builds." + repo + ".duration", Value: d.GetDuration().AsDuration().Seconds(), Timestamp: fin})
		}
		status := strings.ToLower(strings.TrimPrefix(d.GetStatus().String(), "BUILD_STATUS_"))
		s.st.Incr("shiploop.builds."+repo+"."+status+".count", fin, 1)
		if _, err := tx.ExecContext(ctx, `DELETE FROM build_times WHERE build_id = $1`, d.GetBuildId()); err != nil {
			return fmt.Errorf("forgetting build %s: %w", d.GetBuildId(), err)
		}
	case *eventsv1.JobFinished:
		for _, st := range d.GetSteps() {
			if st.GetDuration() != nil {
				pts = append(pts, carbon.Point{Name: "shiploop.steps." + repo + "." + pathToken(st.GetName()) + ".duration", Value: st.GetDuration().AsDuration().Seconds(), Timestamp: at})
			}
		}
	}
	if ev.Type == "deploy.finished" || ev.Type == "deploy.succeeded" {
		// Each deploy is an annotation Grafana shows with "tags: deploy".
		tags := []string{"deploy", repo}
		if env := ev.Header.Get("ce-environment"); env != "" {
			tags = append(tags, pathToken(env))
		}
		if _, err := s.addEvent(ctx, tx, at, fmt.Sprintf("deploy %s %s", ev.Repository, ev.Subject), tags, ev.ID, ev.ID); err != nil {
			return err
		}
	}
	if len(pts) > 0 {
		s.st.TryAdd(pts)
	}
	return nil
}

// pathToken makes a string safe as one Graphite path component.
func pathToken(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
