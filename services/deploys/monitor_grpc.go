package deploys

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
)

func tsOrNil(ns int64) *timestamppb.Timestamp {
	if ns == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, ns))
}

// ListMonitors lists the active monitors of a repository (of one
// environment) and the silences in force.
func (g *grpcServer) ListMonitors(ctx context.Context, req *deploysv1.ListMonitorsRequest) (*deploysv1.ListMonitorsResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	resp := &deploysv1.ListMonitorsResponse{}
	now := g.s.now().UnixNano()
	rows, err := g.s.db.QueryContext(ctx, `SELECT `+monitorCols+`, check_text FROM monitors WHERE repository = $1 AND ($2 = '' OR environment = $2) AND active = 1 ORDER BY environment, name`,
		req.GetRepository(), req.GetEnvironment())
	if err != nil {
		return nil, statusOf(err)
	}
	var ms []*deploysv1.Monitor
	for rows.Next() {
		var check string
		m, err := scanMonitor(scanFunc(func(dest ...any) error { return rows.Scan(append(dest, &check)...) }))
		if err != nil {
			rows.Close()
			return nil, statusOf(err)
		}
		ms = append(ms, &deploysv1.Monitor{Repository: m.repo, Environment: m.env, Name: m.name, Check: check, State: m.state,
			Since: tsOrNil(m.since), Detail: m.detail, CheckedAt: tsOrNil(m.checkedAt), BlocksPromotion: m.blocks, Release: m.release})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, statusOf(err)
	}
	for _, m := range ms {
		if m.SilenceId, err = activeSilence(ctx, g.s.db, m.Repository, m.Environment, m.Name, now); err != nil {
			return nil, statusOf(err)
		}
	}
	resp.Monitors = ms
	srows, err := g.s.db.QueryContext(ctx, `SELECT `+silenceCols+` FROM monitor_silences WHERE repository = $1 AND ($2 = '' OR environment = $2) AND removed_at = 0 AND ends_at > $3 ORDER BY id`,
		req.GetRepository(), req.GetEnvironment(), now)
	if err != nil {
		return nil, statusOf(err)
	}
	defer srows.Close()
	for srows.Next() {
		sl, err := scanSilence(srows)
		if err != nil {
			return nil, statusOf(err)
		}
		resp.Silences = append(resp.Silences, sl)
	}
	return resp, statusOf(srows.Err())
}

type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

const silenceCols = `id, repository, environment, monitor, ends_at, reason, created_by, created_at`

func scanSilence(r scanner) (*deploysv1.MonitorSilence, error) {
	sl := &deploysv1.MonitorSilence{}
	var ends, created int64
	if err := r.Scan(&sl.Id, &sl.Repository, &sl.Environment, &sl.Monitor, &ends, &sl.Reason, &sl.CreatedBy, &created); err != nil {
		return nil, err
	}
	sl.EndsAt, sl.CreatedAt = tsOrNil(ends), tsOrNil(created)
	return sl, nil
}

// Silence adds a silence: the alerts it covers are recorded, not sent.
func (g *grpcServer) Silence(ctx context.Context, req *deploysv1.SilenceRequest) (*deploysv1.SilenceResponse, error) {
	for _, f := range [][2]string{{"repository", req.GetRepository()}, {"environment", req.GetEnvironment()}, {"reason", req.GetReason()}} {
		if err := need(f[0], f[1]); err != nil {
			return nil, err
		}
	}
	now := g.s.now()
	if !req.GetEndsAt().IsValid() || !req.GetEndsAt().AsTime().After(now) {
		return nil, invalid("ends_at", "must be in the future (--for 2h)")
	}
	var sl *deploysv1.MonitorSilence
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		var id int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO monitor_silences (repository, environment, monitor, ends_at, reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			req.GetRepository(), req.GetEnvironment(), req.GetMonitor(), req.GetEndsAt().AsTime().UnixNano(), req.GetReason(), by(req.GetBy()), now.UnixNano()).Scan(&id); err != nil {
			return err
		}
		var err error
		sl, err = scanSilence(tx.QueryRowContext(ctx, `SELECT `+silenceCols+` FROM monitor_silences WHERE id = $1`, id))
		return err
	})
	if err != nil {
		return nil, statusOf(err)
	}
	g.s.log.Info("monitor silence", "id", sl.Id, "repository", sl.Repository, "environment", sl.Environment, "monitor", sl.Monitor, "until", sl.EndsAt.AsTime(), "by", sl.CreatedBy)
	return &deploysv1.SilenceResponse{Silence: sl}, nil
}

// Unsilence removes a silence.
func (g *grpcServer) Unsilence(ctx context.Context, req *deploysv1.UnsilenceRequest) (*deploysv1.UnsilenceResponse, error) {
	if req.GetId() <= 0 {
		return nil, invalid("id", "required")
	}
	var sl *deploysv1.MonitorSilence
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		var err error
		sl, err = scanSilence(tx.QueryRowContext(ctx, `SELECT `+silenceCols+` FROM monitor_silences WHERE id = $1 AND removed_at = 0`, req.GetId()))
		if errors.Is(err, sql.ErrNoRows) {
			return status.Errorf(codes.NotFound, "no silence #%d in force (shiploop monitor ls lists them)", req.GetId())
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE monitor_silences SET removed_at = $1, removed_by = $2 WHERE id = $3`, g.s.now().UnixNano(), by(req.GetBy()), req.GetId())
		return err
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.UnsilenceResponse{Silence: sl}, nil
}
