// TestRunService over gRPC.

package testruns

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
	"github.com/shiploop/shiploop/services/testruns/report"
)

// RegisterGRPC registers TestRunService on a gRPC server.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	testrunsv1.RegisterTestRunServiceServer(r, &grpcServer{s: s})
}

type grpcServer struct {
	testrunsv1.UnimplementedTestRunServiceServer
	s *Service
}

func invalid(field, msg string) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, msg)
}

func unavailable(what string, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	return status.Errorf(codes.Unavailable, "%s: %v", what, err)
}

func pageSize(n int32) int {
	switch {
	case n <= 0:
		return 50
	case n > 1000:
		return 1000
	}
	return int(n)
}

func encodeToken(parts ...string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, "\x00")))
}

func decodeToken(t string, n int) ([]string, error) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return nil, invalid("page_token", "not a token this server gave out")
	}
	parts := strings.Split(string(b), "\x00")
	if len(parts) != n {
		return nil, invalid("page_token", "not a token this server gave out")
	}
	return parts, nil
}

const runColumns = `id, build_id, repository, ref, commit_sha, version, status, jobs_total, jobs_done, tests, passed, failed, errors, skipped, disabled,
	flaky, quarantined, duration_ns, has_coverage, lines_covered, lines_total, raw_covered, raw_total, raw_unit, patch_covered, patch_total, error, started_at, finished_at`

func scanRun(sc interface{ Scan(...any) error }) (*testrunsv1.TestRun, error) {
	r := &testrunsv1.TestRun{Counts: &eventsv1.TestCounts{}}
	var st int32
	var dur, started, finished int64
	var hasCov int
	cov := &eventsv1.CoverageSummary{}
	err := sc.Scan(&r.Id, &r.BuildId, &r.Repository, &r.Ref, &r.Commit, &r.Version, &st, &r.JobsTotal, &r.JobsDone,
		&r.Counts.Tests, &r.Counts.Passed, &r.Counts.Failed, &r.Counts.Errors, &r.Counts.Skipped, &r.Counts.Disabled,
		&r.Counts.Flaky, &r.Counts.Quarantined, &dur, &hasCov, &cov.LinesCovered, &cov.LinesTotal, &cov.RawCovered, &cov.RawTotal, &cov.RawUnit,
		&cov.PatchCovered, &cov.PatchTotal, &r.Error, &started, &finished)
	if err != nil {
		return nil, err
	}
	r.Status = eventsv1.TestRunStatus(st)
	r.StartedAt = timestamppb.New(time.Unix(0, started))
	if finished != 0 {
		r.FinishedAt = timestamppb.New(time.Unix(0, finished))
		r.Duration = durationpb.New(time.Duration(dur))
	}
	if hasCov == 1 {
		r.Coverage = cov
	}
	return r, nil
}

func (s *Service) loadRun(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, id string) (*testrunsv1.TestRun, error) {
	r, err := scanRun(q.QueryRowContext(ctx, `SELECT `+runColumns+` FROM test_runs WHERE id = $1`, id))
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT name, format, job_id, error, cases FROM test_reports WHERE run_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		rep := &testrunsv1.Report{}
		if err := rows.Scan(&rep.Name, &rep.Format, &rep.JobId, &rep.Error, &rep.Cases); err != nil {
			return nil, err
		}
		r.Reports = append(r.Reports, rep)
	}
	return r, rows.Err()
}

func (g *grpcServer) GetTestRun(ctx context.Context, req *testrunsv1.GetTestRunRequest) (*testrunsv1.GetTestRunResponse, error) {
	id := req.GetId()
	switch {
	case id == "" && req.GetBuildId() == "":
		return nil, invalid("id", "required (or build_id)")
	case id == "":
		err := g.s.db.QueryRowContext(ctx, `SELECT id FROM test_runs WHERE build_id = $1 ORDER BY started_at DESC, id DESC LIMIT 1`, req.GetBuildId()).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, status.Errorf(codes.NotFound, "build %s has no test run", req.GetBuildId())
		}
		if err != nil {
			return nil, unavailable("finding the run", err)
		}
	}
	r, err := g.s.loadRun(ctx, g.s.db, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, status.Errorf(codes.NotFound, "test run %s not found", id)
	}
	if err != nil {
		return nil, unavailable("loading the run", err)
	}
	return &testrunsv1.GetTestRunResponse{Run: r}, nil
}

func (g *grpcServer) ListTestRuns(ctx context.Context, req *testrunsv1.ListTestRunsRequest) (*testrunsv1.ListTestRunsResponse, error) {
	before, beforeID := int64(1<<62), "\U0010FFFF"
	if t := req.GetPageToken(); t != "" {
		p, err := decodeToken(t, 2)
		if err != nil {
			return nil, err
		}
		before, _ = strconv.ParseInt(p[0], 10, 64)
		beforeID = p[1]
	}
	size := pageSize(req.GetPageSize())
	q := `SELECT ` + runColumns + ` FROM test_runs WHERE (started_at < $1 OR (started_at = $1 AND id < $2))`
	args := []any{before, beforeID}
	if req.GetRepository() != "" {
		q += ` AND repository = $3`
		args = append(args, req.GetRepository())
	}
	q += fmt.Sprintf(` ORDER BY started_at DESC, id DESC LIMIT %d`, size+1)
	rows, err := g.s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, unavailable("listing runs", err)
	}
	defer rows.Close()
	resp := &testrunsv1.ListTestRunsResponse{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, unavailable("listing runs", err)
		}
		resp.Runs = append(resp.Runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("listing runs", err)
	}
	if len(resp.Runs) > size {
		resp.Runs = resp.Runs[:size]
		last := resp.Runs[size-1]
		resp.NextPageToken = encodeToken(strconv.FormatInt(last.StartedAt.AsTime().UnixNano(), 10), last.Id)
	}
	return resp, nil
}

var validStatuses = []string{"passed", "failed", "error", "skipped", "disabled"}

func (g *grpcServer) ListTestCases(ctx context.Context, req *testrunsv1.ListTestCasesRequest) (*testrunsv1.ListTestCasesResponse, error) {
	if req.GetRunId() == "" {
		return nil, invalid("run_id", "required")
	}
	after := int64(0)
	if t := req.GetPageToken(); t != "" {
		p, err := decodeToken(t, 1)
		if err != nil {
			return nil, err
		}
		after, _ = strconv.ParseInt(p[0], 10, 64)
	}
	q := `SELECT r.id, t.suite, t.class_name, t.name, r.status, r.duration_ns, r.message, r.details, r.flaky, t.quarantined, r.job_id, r.attempt, r.file, r.line
		FROM test_results r JOIN tests t ON t.id = r.test_id WHERE r.run_id = $1 AND r.id > $2`
	args := []any{req.GetRunId(), after}
	if len(req.GetStatuses()) > 0 {
		var ph []string
		for i, st := range req.GetStatuses() {
			if !slices.Contains(validStatuses, st) {
				return nil, invalid(fmt.Sprintf("statuses[%d]", i), fmt.Sprintf("%q: want one of %s", st, strings.Join(validStatuses, ", ")))
			}
			args = append(args, st)
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		q += ` AND r.status IN (` + strings.Join(ph, ", ") + `)`
	}
	if req.GetFlakyOnly() {
		q += ` AND r.flaky = 1`
	}
	size := pageSize(req.GetPageSize())
	q += fmt.Sprintf(` ORDER BY r.id LIMIT %d`, size+1)
	var n int
	if err := g.s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM test_runs WHERE id = $1`, req.GetRunId()).Scan(&n); err != nil {
		return nil, unavailable("finding the run", err)
	}
	if n == 0 {
		return nil, status.Errorf(codes.NotFound, "test run %s not found", req.GetRunId())
	}
	rows, err := g.s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, unavailable("listing cases", err)
	}
	defer rows.Close()
	resp := &testrunsv1.ListTestCasesResponse{}
	var ids []int64
	for rows.Next() {
		var rid int64
		c := &testrunsv1.TestCase{}
		var dur int64
		var flaky, quar int
		if err := rows.Scan(&rid, &c.Suite, &c.ClassName, &c.Name, &c.Status, &dur, &c.Message, &c.Details, &flaky, &quar, &c.JobId, &c.Attempt, &c.File, &c.Line); err != nil {
			return nil, unavailable("listing cases", err)
		}
		c.Duration = durationpb.New(time.Duration(dur))
		c.Flaky, c.Quarantined = flaky == 1, quar == 1
		ids = append(ids, rid)
		resp.Cases = append(resp.Cases, c)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("listing cases", err)
	}
	if len(resp.Cases) > size {
		resp.Cases = resp.Cases[:size]
		resp.NextPageToken = encodeToken(strconv.FormatInt(ids[size-1], 10))
	}
	return resp, nil
}

const statsColumns = `id, repository, suite, class_name, name, runs, failures, total_duration_ns, last_status, first_seen, last_seen, last_flaky, flaky_count, quarantined, quarantine_reason`

func scanStats(sc interface{ Scan(...any) error }) (int64, *testrunsv1.TestStats, error) {
	st := &testrunsv1.TestStats{Test: &testrunsv1.TestID{}}
	var id, dur, first, last, flaky int64
	var q int
	err := sc.Scan(&id, &st.Test.Repository, &st.Test.Suite, &st.Test.ClassName, &st.Test.Name, &st.Runs, &st.Failures, &dur,
		&st.LastStatus, &first, &last, &flaky, &st.FlakyCount, &q, &st.QuarantineReason)
	if err != nil {
		return 0, nil, err
	}
	if st.Runs > 0 {
		st.FailureRate = float64(st.Failures) / float64(st.Runs)
		st.AverageDuration = durationpb.New(time.Duration(dur / st.Runs))
	}
	st.FirstSeen = timestamppb.New(time.Unix(0, first))
	st.LastSeen = timestamppb.New(time.Unix(0, last))
	if flaky != 0 {
		st.LastFlaky = timestamppb.New(time.Unix(0, flaky))
	}
	st.Quarantined = q == 1
	return id, st, nil
}

func (g *grpcServer) findTest(ctx context.Context, t *testrunsv1.TestID) (int64, *testrunsv1.TestStats, error) {
	if t.GetRepository() == "" {
		return 0, nil, invalid("test.repository", "required")
	}
	if t.GetName() == "" {
		return 0, nil, invalid("test.name", "required")
	}
	id, st, err := scanStats(g.s.db.QueryRowContext(ctx, `SELECT `+statsColumns+` FROM tests WHERE repository = $1 AND suite = $2 AND class_name = $3 AND name = $4`,
		t.GetRepository(), t.GetSuite(), t.GetClassName(), t.GetName()))
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, status.Errorf(codes.NotFound, "no test %q (suite %q, class %q) in %s", t.GetName(), t.GetSuite(), t.GetClassName(), t.GetRepository())
	}
	if err != nil {
		return 0, nil, unavailable("finding the test", err)
	}
	return id, st, nil
}

func (g *grpcServer) TestHistory(ctx context.Context, req *testrunsv1.TestHistoryRequest) (*testrunsv1.TestHistoryResponse, error) {
	id, st, err := g.findTest(ctx, req.GetTest())
	if err != nil {
		return nil, err
	}
	before := int64(1<<62 - 1)
	if t := req.GetPageToken(); t != "" {
		p, err := decodeToken(t, 1)
		if err != nil {
			return nil, err
		}
		before, _ = strconv.ParseInt(p[0], 10, 64)
	}
	size := pageSize(req.GetPageSize())
	// Newest first by the (test_id, id) index; the run is joined per row.
	rows, err := g.s.db.QueryContext(ctx, fmt.Sprintf(`SELECT r.id, r.run_id, tr.build_id, r.commit_sha, tr.ref, r.status, r.duration_ns, r.message, r.flaky, r.created_at
		FROM test_results r JOIN test_runs tr ON tr.id = r.run_id WHERE r.test_id = $1 AND r.id < $2 ORDER BY r.id DESC LIMIT %d`, size+1), id, before)
	if err != nil {
		return nil, unavailable("reading history", err)
	}
	defer rows.Close()
	resp := &testrunsv1.TestHistoryResponse{Stats: st}
	var ids []int64
	for rows.Next() {
		e := &testrunsv1.HistoryEntry{}
		var rid, dur, at int64
		var flaky int
		if err := rows.Scan(&rid, &e.RunId, &e.BuildId, &e.Commit, &e.Ref, &e.Status, &dur, &e.Message, &flaky, &at); err != nil {
			return nil, unavailable("reading history", err)
		}
		e.Duration = durationpb.New(time.Duration(dur))
		e.Flaky = flaky == 1
		e.Time = timestamppb.New(time.Unix(0, at))
		ids = append(ids, rid)
		resp.Entries = append(resp.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("reading history", err)
	}
	if len(resp.Entries) > size {
		resp.Entries = resp.Entries[:size]
		resp.NextPageToken = encodeToken(strconv.FormatInt(ids[size-1], 10))
	}
	return resp, nil
}

func (g *grpcServer) FlakyTests(ctx context.Context, req *testrunsv1.FlakyTestsRequest) (*testrunsv1.FlakyTestsResponse, error) {
	if req.GetRepository() == "" {
		return nil, invalid("repository", "required")
	}
	window := g.s.cfg.FlakyWindow
	if w := req.GetWindow(); w != nil {
		if w.AsDuration() <= 0 {
			return nil, invalid("window", "must be positive")
		}
		window = w.AsDuration()
	}
	since := time.Now().Add(-window).UnixNano()
	rows, err := g.s.db.QueryContext(ctx, fmt.Sprintf(`SELECT `+statsColumns+` FROM tests WHERE repository = $1 AND last_flaky >= $2 AND last_flaky > 0
		ORDER BY last_flaky DESC, id LIMIT %d`, pageSize(req.GetPageSize())), req.GetRepository(), since)
	if err != nil {
		return nil, unavailable("listing flaky tests", err)
	}
	defer rows.Close()
	resp := &testrunsv1.FlakyTestsResponse{}
	for rows.Next() {
		_, st, err := scanStats(rows)
		if err != nil {
			return nil, unavailable("listing flaky tests", err)
		}
		resp.Tests = append(resp.Tests, st)
	}
	return resp, rows.Err()
}

func (g *grpcServer) Coverage(ctx context.Context, req *testrunsv1.CoverageRequest) (*testrunsv1.CoverageResponse, error) {
	if req.GetRunId() == "" {
		return nil, invalid("run_id", "required")
	}
	r, err := scanRun(g.s.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM test_runs WHERE id = $1`, req.GetRunId()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, status.Errorf(codes.NotFound, "test run %s not found", req.GetRunId())
	}
	if err != nil {
		return nil, unavailable("loading the run", err)
	}
	if r.Coverage == nil {
		return nil, status.Errorf(codes.NotFound, "test run %s has no coverage report", req.GetRunId())
	}
	rows, err := g.s.db.QueryContext(ctx, `SELECT path, lines, lines_covered, lines_total, branches_covered, branches_total, patch_covered, patch_total
		FROM coverage_files WHERE run_id = $1 ORDER BY path`, req.GetRunId())
	if err != nil {
		return nil, unavailable("reading coverage", err)
	}
	defer rows.Close()
	resp := &testrunsv1.CoverageResponse{Summary: r.Coverage}
	var lc, lt int64
	for rows.Next() {
		f := &testrunsv1.FileCoverage{}
		var lines []byte
		if err := rows.Scan(&f.Path, &lines, &f.LinesCovered, &f.LinesTotal, &f.BranchesCovered, &f.BranchesTotal, &f.PatchCovered, &f.PatchTotal); err != nil {
			return nil, unavailable("reading coverage", err)
		}
		lc += f.LinesCovered
		lt += f.LinesTotal
		if !strings.HasPrefix(f.Path, req.GetPathPrefix()) {
			continue
		}
		hits := decodeLines(lines)
		for _, l := range slices.Sorted(maps.Keys(hits)) {
			if hits[l] == 0 {
				f.MissedLines = append(f.MissedLines, int32(l))
			}
		}
		resp.Files = append(resp.Files, f)
	}
	if r.FinishedAt == nil {
		// Still running: the summary so far.
		resp.Summary.LinesCovered, resp.Summary.LinesTotal = lc, lt
	}
	return resp, rows.Err()
}

func (g *grpcServer) SetQuarantine(ctx context.Context, req *testrunsv1.SetQuarantineRequest) (*testrunsv1.SetQuarantineResponse, error) {
	id, _, err := g.findTest(ctx, req.GetTest())
	if err != nil {
		return nil, err
	}
	q, reason := 0, ""
	if req.GetQuarantined() {
		q, reason = 1, req.GetReason()
	}
	if _, err := g.s.db.ExecContext(ctx, `UPDATE tests SET quarantined = $1, quarantine_reason = $2 WHERE id = $3`, q, reason, id); err != nil {
		return nil, unavailable("updating the test", err)
	}
	_, st, err := g.findTest(ctx, req.GetTest())
	if err != nil {
		return nil, err
	}
	return &testrunsv1.SetQuarantineResponse{Test: st}, nil
}

func (g *grpcServer) ListQuarantine(ctx context.Context, req *testrunsv1.ListQuarantineRequest) (*testrunsv1.ListQuarantineResponse, error) {
	if req.GetRepository() == "" {
		return nil, invalid("repository", "required")
	}
	rows, err := g.s.db.QueryContext(ctx, `SELECT `+statsColumns+` FROM tests WHERE repository = $1 AND quarantined = 1 ORDER BY suite, class_name, name`, req.GetRepository())
	if err != nil {
		return nil, unavailable("listing quarantine", err)
	}
	defer rows.Close()
	resp := &testrunsv1.ListQuarantineResponse{}
	for rows.Next() {
		_, st, err := scanStats(rows)
		if err != nil {
			return nil, unavailable("listing quarantine", err)
		}
		resp.Tests = append(resp.Tests, st)
	}
	return resp, rows.Err()
}

var knownFormats = []string{report.FormatJUnit, report.FormatGoTest, report.FormatCobertura, report.FormatLCOV, report.FormatGoCover, report.FormatJaCoCo, report.FormatDiff}

func (g *grpcServer) UploadReport(ctx context.Context, req *testrunsv1.UploadReportRequest) (*testrunsv1.UploadReportResponse, error) {
	if req.GetBuildId() == "" {
		return nil, invalid("build_id", "required")
	}
	if f := req.GetFormat(); f != "" && !slices.Contains(knownFormats, f) {
		return nil, invalid("format", fmt.Sprintf("%q: want one of %s, or empty to detect", f, strings.Join(knownFormats, ", ")))
	}
	name := req.GetName()
	if name == "" {
		name = "report"
	}
	s := g.s
	b, err := loadBuild(ctx, s.db, req.GetBuildId())
	if errors.Is(err, sql.ErrNoRows) {
		return nil, status.Errorf(codes.FailedPrecondition, "unknown build %s: testruns has no build.created for it (is the id right, and has the builds service published it?)", req.GetBuildId())
	}
	if err != nil {
		return nil, unavailable("finding the build", err)
	}
	// Kept as sent, for download (GET /builds/{id}/reports/...).
	key := "uploads/" + b.id + "/" + bus.NewID() + "/" + path.Base(name)
	obs, err := s.reportStore(ctx)
	if err != nil {
		return nil, unavailable("opening the report store", err)
	}
	if _, err := obs.PutBytes(ctx, key, req.GetContent()); err != nil {
		return nil, unavailable("storing the report file", err)
	}
	// Parse before the transaction: a large report must not hold the database.
	pr := parsedReport{name: name, key: key}
	pr.p, pr.err = report.Parse(bytes.NewReader(req.GetContent()), req.GetFormat(), report.Paths{Prefixes: req.GetPathPrefixes()}, s.parseOptions(name))
	if pr.p != nil {
		pr.format = pr.p.Format
	}
	var runID string
	err = s.ob.InTx(ctx, func(tx *bus.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT id FROM test_runs WHERE build_id = $1 AND finished_at = 0 ORDER BY started_at DESC LIMIT 1`, b.id).Scan(&runID)
		if errors.Is(err, sql.ErrNoRows) {
			runID, err = s.createRun(ctx, tx, b, 0)
		}
		if err != nil {
			return err
		}
		run, err := loadRunRow(ctx, tx, runID)
		if err != nil {
			return err
		}
		if err := s.storeReport(ctx, tx, run, "", 1, pr); err != nil {
			return err
		}
		if req.GetComplete() {
			return s.finishRun(ctx, tx, runID)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("storing the report", err)
	}
	run, err := s.loadRun(ctx, s.db, runID)
	if err != nil {
		return nil, unavailable("loading the run", err)
	}
	rep := &testrunsv1.Report{Name: name, Format: pr.format}
	if pr.err != nil {
		rep.Error = pr.err.Error()
	}
	if pr.p != nil && pr.p.Tests != nil {
		rep.Cases = int64(len(pr.p.Tests.Cases))
	}
	return &testrunsv1.UploadReportResponse{Run: run, Report: rep}, nil
}
