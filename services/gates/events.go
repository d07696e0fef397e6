package gates

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/gatepolicy"
	"github.com/shiploop/shiploop/pkg/glob"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/gates/policy"
	"github.com/shiploop/shiploop/services/gates/report"
)

// artifactBucket is where agents keep artifacts ("<job id>/<path>").
const artifactBucket = "artifacts"

// readReport is one report read in Prepare.
type readReport struct {
	name, format string
	findings     []report.Finding
	numbers      map[string]float64 // metrics reports
	err          string
}

// prepareEvent reads the reports a finished job kept, when the build's
// gate names them.
func (s *Service) prepareEvent(ctx context.Context, ev bus.Event) (any, error) {
	jf, ok := ev.Data.(*eventsv1.JobFinished)
	if !ok || len(jf.GetArtifacts()) == 0 {
		return nil, nil
	}
	pol, err := s.buildPolicy(ctx, s.db, jf.GetBuildId())
	if err != nil || pol == nil || pol.GetReports() == nil {
		return nil, err
	}
	var out []readReport
	for _, a := range jf.GetArtifacts() {
		format := reportFormat(pol.GetReports(), a.GetName())
		if format == "" {
			continue
		}
		r := readReport{name: a.GetName(), format: format}
		data, err := s.fetchArtifact(ctx, a.GetKey())
		if err != nil {
			return nil, fmt.Errorf("reading report %s: %w", a.GetName(), err) // retried
		}
		if format == "metrics" {
			r.numbers, err = parseMetrics(a.GetName(), data)
		} else {
			r.findings, err = report.Parse(format, a.GetName(), data)
		}
		if err != nil {
			r.err = err.Error()
		}
		out = append(out, r)
	}
	return out, nil
}

func (s *Service) fetchArtifact(ctx context.Context, key string) ([]byte, error) {
	obs, err := s.bus.JetStream().ObjectStore(ctx, artifactBucket)
	if err != nil {
		return nil, err
	}
	rc, err := obs.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, report.MaxSize+1))
	return data, err
}

// reportFormat is the format whose globs match an artifact name, or "".
func reportFormat(r *eventsv1.GateReports, name string) string {
	for _, f := range []struct {
		format string
		globs  []string
	}{{"sarif", r.GetSarif()}, {"flake8", r.GetFlake8()}, {"checkstyle", r.GetCheckstyle()}, {"golangci_lint", r.GetGolangciLint()}, {"metrics", r.GetMetrics()}} {
		for _, g := range f.globs {
			if glob.Match(path.Clean(g), name) {
				return f.format
			}
		}
	}
	return ""
}

// parseMetrics reads a metrics report: a JSON object of numbers. Known
// metric names keep theirs; others become custom.<name>.
func parseMetrics(name string, data []byte) (map[string]float64, error) {
	var raw map[string]float64
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, &report.Error{File: name, Msg: "want a JSON object of numbers: " + err.Error()}
	}
	out := make(map[string]float64, len(raw))
	for k, v := range raw {
		if _, ok := gatepolicy.Lookup(k); ok && !strings.HasPrefix(k, gatepolicy.CustomPrefix) {
			out[k] = v
			continue
		}
		k = gatepolicy.CustomPrefix + strings.TrimPrefix(k, gatepolicy.CustomPrefix)
		if msg := gatepolicy.CheckMetric(k, gatepolicy.ScopeOverall); msg != "" {
			return nil, &report.Error{File: name, Msg: msg}
		}
		out[k] = v
	}
	return out, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// buildPolicy is the gate section of a build's .shiploop.yml, nil without.
func (s *Service) buildPolicy(ctx context.Context, q querier, buildID string) (*eventsv1.GatePolicy, error) {
	var raw []byte
	err := q.QueryRowContext(ctx, `SELECT policy FROM gate_builds WHERE build_id = $1`, buildID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && len(raw) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := &eventsv1.GatePolicy{}
	return p, proto.Unmarshal(raw, p)
}

func (s *Service) handleEvent(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	switch d := ev.Data.(type) {
	case *eventsv1.BuildCreated:
		var pol []byte
		if p := d.GetGate().GetPolicy(); p != nil {
			var err error
			if pol, err = proto.Marshal(p); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO gate_builds (build_id, repository, number, ref, commit_sha, version, base_ref, has_tests, policy, created_seen, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10)
			ON CONFLICT (build_id) DO UPDATE SET base_ref = excluded.base_ref, has_tests = excluded.has_tests, policy = excluded.policy, created_seen = 1`,
			d.GetBuildId(), d.GetRepository(), d.GetNumber(), d.GetRef(), d.GetCommit(), d.GetVersion(), d.GetGate().GetBaseRef(),
			boolInt(d.GetGate().GetHasTests()), pol, time.Now().UnixNano()); err != nil {
			return err
		}
		return s.maybeEvaluate(ctx, tx, d.GetBuildId())
	case *eventsv1.BuildFinished:
		if _, err := tx.ExecContext(ctx, `INSERT INTO gate_builds (build_id, repository, number, ref, commit_sha, version, base_ref, has_tests, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, '', 0, $7) ON CONFLICT (build_id) DO NOTHING`,
			d.GetBuildId(), d.GetRepository(), d.GetNumber(), d.GetRef(), d.GetCommit(), d.GetVersion(), time.Now().UnixNano()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE gate_builds SET build_status = $1 WHERE build_id = $2`, int32(d.GetStatus()), d.GetBuildId()); err != nil {
			return err
		}
		return s.maybeEvaluate(ctx, tx, d.GetBuildId())
	case *eventsv1.TestRunFinished:
		c, cov := d.GetCounts(), d.GetCoverage()
		if _, err := tx.ExecContext(ctx, `INSERT INTO gate_builds (build_id, repository, number, ref, commit_sha, version, base_ref, has_tests, created_at)
			VALUES ($1, $2, 0, $3, $4, $5, '', 1, $6) ON CONFLICT (build_id) DO NOTHING`,
			d.GetBuildId(), d.GetRepository(), d.GetRef(), d.GetCommit(), d.GetVersion(), time.Now().UnixNano()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE gate_builds SET has_testrun = 1, tests_total = $1, tests_failed = $2, tests_flaky = $3, tests_skipped = $4,
			lines_covered = $5, lines_total = $6, patch_covered = $7, patch_total = $8, tests_status = $9, tests_error = $10 WHERE build_id = $11`,
			c.GetTests(), c.GetFailed()+c.GetErrors(), c.GetFlaky(), c.GetSkipped(),
			cov.GetLinesCovered(), cov.GetLinesTotal(), cov.GetPatchCovered(), cov.GetPatchTotal(), int32(d.GetStatus()), d.GetError(), d.GetBuildId()); err != nil {
			return err
		}
		return s.maybeEvaluate(ctx, tx, d.GetBuildId())
	case *eventsv1.JobFinished:
		reps, _ := tx.Prepared.([]readReport)
		if len(reps) == 0 {
			return nil
		}
		for _, r := range reps {
			if err := storeReport(ctx, tx, d.GetBuildId(), r); err != nil {
				return err
			}
		}
		// A report that arrives after the gate was judged judges it again.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM gate_evaluations WHERE build_id = $1`, d.GetBuildId()).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return s.evaluate(ctx, tx, d.GetBuildId())
		}
	}
	return nil
}

// maybeEvaluate judges a build once everything it needs is here, whatever
// order build.created, build.finished and testrun.finished arrived in: the
// build's policy (build.created), its end (build.finished) and, for a
// successful build with tests, the test run. A build already judged is not
// judged again here (a late report re-judges it on purpose, elsewhere).
func (s *Service) maybeEvaluate(ctx context.Context, tx *bus.Tx, buildID string) error {
	var createdSeen, hasTests, hasTestrun bool
	var status int32
	err := tx.QueryRowContext(ctx, `SELECT created_seen, has_tests, has_testrun, build_status FROM gate_builds WHERE build_id = $1`, buildID).
		Scan(&createdSeen, &hasTests, &hasTestrun, &status)
	if err != nil {
		return err
	}
	st := eventsv1.BuildStatus(status)
	switch {
	case !createdSeen, st == eventsv1.BuildStatus_BUILD_STATUS_UNSPECIFIED:
		return nil // not everything is here yet
	case st == eventsv1.BuildStatus_BUILD_STATUS_CANCELED || st == eventsv1.BuildStatus_BUILD_STATUS_SKIPPED:
		return nil // nothing to judge, nothing to block
	case hasTests && st == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS && !hasTestrun:
		return nil // the test run decides when to judge
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM gate_evaluations WHERE build_id = $1`, buildID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	return s.evaluate(ctx, tx, buildID)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func storeReport(ctx context.Context, tx *bus.Tx, buildID string, r readReport) error {
	var fps, detail []byte
	n := int64(len(r.findings))
	if r.numbers != nil {
		detail, _ = json.Marshal(r.numbers)
	} else if r.err == "" {
		fps = report.EncodeFingerprints(r.findings)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if err := json.NewEncoder(zw).Encode(withHex(r.findings)); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		detail = buf.Bytes()
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO gate_reports (build_id, name, format, error, findings, fingerprints, findings_json) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (build_id, name) DO UPDATE SET format = excluded.format, error = excluded.error, findings = excluded.findings,
		fingerprints = excluded.fingerprints, findings_json = excluded.findings_json`,
		buildID, r.name, r.format, r.err, n, fps, detail)
	return err
}

// storedFinding is a finding as kept for display.
type storedFinding struct {
	report.Finding
	FP string `json:"fingerprint"`
}

func withHex(fs []report.Finding) []storedFinding {
	out := make([]storedFinding, len(fs))
	for i := range fs {
		out[i] = storedFinding{Finding: fs[i], FP: fs[i].FingerprintHex()}
	}
	return out
}

// buildRow is what evaluate needs about a build.
type buildRow struct {
	id, repo, ref, commit, version, baseRef        string
	number                                         int64
	status                                         int32
	policy                                         []byte
	hasTests, hasTestrun                           bool
	testsStatus                                    int32
	testsError                                     string
	total, failed, flaky, skipped                  int64
	linesCovered, linesTotal, patchCov, patchTotal int64
}

// evaluate judges a build's gate with what is known now, stores the
// evaluation (one revision more) and publishes gate.evaluated.
func (s *Service) evaluate(ctx context.Context, tx *bus.Tx, buildID string) error {
	var b buildRow
	err := tx.QueryRowContext(ctx, `SELECT build_id, repository, ref, commit_sha, version, base_ref, number, build_status, policy, has_tests, has_testrun,
		tests_status, tests_error, tests_total, tests_failed, tests_flaky, tests_skipped, lines_covered, lines_total, patch_covered, patch_total FROM gate_builds WHERE build_id = $1`, buildID).
		Scan(&b.id, &b.repo, &b.ref, &b.commit, &b.version, &b.baseRef, &b.number, &b.status, &b.policy, &b.hasTests, &b.hasTestrun,
			&b.testsStatus, &b.testsError, &b.total, &b.failed, &b.flaky, &b.skipped, &b.linesCovered, &b.linesTotal, &b.patchCov, &b.patchTotal)
	if err != nil {
		return fmt.Errorf("gate of build %s: %w", buildID, err)
	}
	in, err := s.gather(ctx, tx, &b)
	if err != nil {
		return err
	}
	res := judge(in)
	var rev int32
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(revision), 0) FROM gate_evaluations WHERE build_id = $1`, buildID).Scan(&rev); err != nil {
		return err
	}
	now := time.Now().UTC()
	res.ev.EvaluationId = bus.NewID()
	res.ev.BuildId, res.ev.BuildNumber, res.ev.Repository, res.ev.Ref, res.ev.Commit, res.ev.Version = b.id, b.number, b.repo, b.ref, b.commit, b.version
	res.ev.Revision, res.ev.EvaluatedAt = rev+1, timestamppb.New(now)
	data, err := proto.Marshal(res.ev)
	if err != nil {
		return err
	}
	var cov any
	if c, ok := in.measures.Overall["coverage"]; ok {
		cov = c
	}
	newJSON, _ := json.Marshal(withHex(res.newFindings))
	if _, err := tx.ExecContext(ctx, `INSERT INTO gate_evaluations (build_id, repository, number, ref, revision, status, coverage, result, new_findings, evaluated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (build_id) DO UPDATE SET revision = excluded.revision, status = excluded.status,
		coverage = excluded.coverage, result = excluded.result, new_findings = excluded.new_findings, evaluated_at = excluded.evaluated_at`,
		b.id, b.repo, b.number, b.ref, res.ev.Revision, int32(res.ev.Status), cov, data, newJSON, now.UnixNano()); err != nil {
		return err
	}
	s.log.Info("gate evaluated", "repository", b.repo, "build", b.id, "number", b.number, "status", res.ev.Status, "revision", res.ev.Revision, "summary", res.ev.Summary)
	return tx.Publish(bus.Event{Type: "gate.evaluated", Repository: b.repo, Subject: b.id, Data: res.ev})
}

// inputs are everything a judgement needs, gathered from the database.
type inputs struct {
	b            *buildRow
	pol          *eventsv1.GatePolicy
	source       string
	measures     policy.Measures
	newLines     int
	reportErrors []string
	// noData says what the test stage did not deliver (a run in error, no
	// tests), "" when nothing is missing.
	noData string
	// The build's findings absent from the base, and the others, each up
	// to maxEventFindings, in report order (gate.evaluated and the
	// new-findings table).
	newFindings, oldFindings []report.Finding
	base                     report.Base // nil: no base analysis
	issues                   int64
	newIssues                int64
}

func (s *Service) gather(ctx context.Context, tx *bus.Tx, b *buildRow) (*inputs, error) {
	in := &inputs{b: b, newLines: -1, measures: policy.Measures{Overall: map[string]float64{}, NewCode: map[string]float64{}}}
	if len(b.policy) > 0 {
		in.pol, in.source = &eventsv1.GatePolicy{}, "file"
		if err := proto.Unmarshal(b.policy, in.pol); err != nil {
			return nil, err
		}
	} else {
		var err error
		if in.pol, in.source, err = s.storedPolicy(ctx, tx, b.repo); err != nil {
			return nil, err
		}
	}
	m := in.measures
	in.noData = testsMissing(b)
	if b.hasTestrun && b.total > 0 {
		// A run without tests gives no test numbers: "tests_failed == 0"
		// over zero tests is no data, not a pass.
		m.Overall["tests_total"], m.Overall["tests_failed"] = float64(b.total), float64(b.failed)
		m.Overall["tests_flaky"], m.Overall["tests_skipped"] = float64(b.flaky), float64(b.skipped)
	}
	if b.hasTestrun {
		if b.linesTotal > 0 {
			m.Overall["coverage"] = pct(b.linesCovered, b.linesTotal)
			if base, ok, err := baseCoverage(ctx, tx, b); err != nil {
				return nil, err
			} else if ok {
				m.Overall["coverage_delta"] = m.Overall["coverage"] - base
			}
		}
		if b.linesTotal > 0 || b.patchTotal > 0 {
			in.newLines = int(b.patchTotal)
			m.Overall["new_lines"] = float64(b.patchTotal)
		}
		if b.patchTotal > 0 {
			m.Overall["patch_coverage"] = pct(b.patchCov, b.patchTotal)
			m.NewCode["coverage"] = m.Overall["patch_coverage"]
		}
	}
	// Static analysis: this build's reports against the base's.
	base, err := baseFingerprints(ctx, tx, b)
	if err != nil {
		return nil, err
	}
	in.base = base
	rows, err := tx.QueryContext(ctx, `SELECT name, format, error, fingerprints, findings_json FROM gate_reports WHERE build_id = $1 ORDER BY name`, b.id)
	if err != nil {
		return nil, err
	}
	var packed []report.Packed
	haveAnalysis := false
	for rows.Next() {
		var name, format, rerr string
		var fps, detail []byte
		if err := rows.Scan(&name, &format, &rerr, &fps, &detail); err != nil {
			rows.Close()
			return nil, err
		}
		switch {
		case rerr != "":
			in.reportErrors = append(in.reportErrors, rerr)
		case format == "metrics":
			var nums map[string]float64
			if err := json.Unmarshal(detail, &nums); err == nil {
				for k, v := range nums {
					m.Overall[k] = v
				}
			}
		default:
			haveAnalysis = true
			p, err := report.DecodeFingerprints(fps)
			if err != nil {
				rows.Close()
				return nil, err
			}
			packed = append(packed, p...)
			in.newFindings, in.oldFindings = decodeFindings(detail, base, in.newFindings, in.oldFindings)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if haveAnalysis {
		counts := map[string]float64{}
		for _, p := range packed {
			counts["issues"]++
			counts["issues_"+p.Level]++
			if base == nil {
				counts["new_issues"]++
				counts["new_issues_"+p.Level]++
			} else if _, ok := base[p.Fingerprint]; !ok {
				counts["new_issues"]++
				counts["new_issues_"+p.Level]++
			}
		}
		for _, k := range []string{"issues", "issues_error", "issues_warning", "issues_note"} {
			m.Overall[k] = counts[k]
			m.NewCode[k] = counts["new_"+k]
		}
		in.issues, in.newIssues = int64(counts["issues"]), int64(counts["new_issues"])
	}
	return in, nil
}

// testsMissing says what a build with a test stage lacks to be judged on:
// its run errored, or reported no tests. "" when nothing is missing.
func testsMissing(b *buildRow) string {
	if !b.hasTests || !b.hasTestrun {
		return ""
	}
	if eventsv1.TestRunStatus(b.testsStatus) == eventsv1.TestRunStatus_TEST_RUN_STATUS_ERROR {
		msg := "test run errored"
		if e := strings.TrimSpace(b.testsError); e != "" {
			msg += " (" + cutText(strings.Join(strings.Fields(e), " "), 200) + ")"
		}
		if b.total == 0 {
			msg += ", no tests reported"
		}
		return msg
	}
	if b.total == 0 {
		return "test stage configured but no test report arrived (0 tests)"
	}
	return ""
}

func pct(a, b int64) float64 { return math.Round(float64(a)/float64(b)*10000) / 100 }

// maxEventFindings bounds the findings gate.evaluated carries: enough for
// a reviewer (Harbormaster shows them as lint), small enough for an event
// (200 findings with 1 KiB messages stay well under NATS's 1 MiB default).
const maxEventFindings = 200

// maxFindingMessage bounds a finding's message in gate.evaluated.
const maxFindingMessage = 1024

// maxNewFindingsTable bounds the new findings kept for GetEvaluation.
const maxNewFindingsTable = 100

// decodeFindings appends a report's stored findings to news (absent from
// base) and olds, each up to maxEventFindings. It stops reading once news
// is full: old findings only fill what room new ones leave.
func decodeFindings(detail []byte, base report.Base, news, olds []report.Finding) ([]report.Finding, []report.Finding) {
	if len(detail) == 0 || len(news) >= maxEventFindings {
		return news, olds
	}
	zr, err := gzip.NewReader(bytes.NewReader(detail))
	if err != nil {
		return news, olds
	}
	dec := json.NewDecoder(zr)
	if _, err := dec.Token(); err != nil {
		return news, olds
	}
	for dec.More() && len(news) < maxEventFindings {
		var f storedFinding
		if err := dec.Decode(&f); err != nil {
			break
		}
		if _, err := fmt.Sscanf(f.FP, "%x", &f.Finding.Fingerprint); err != nil {
			continue
		}
		switch {
		case base == nil || base.IsNew(&f.Finding):
			news = append(news, f.Finding)
		case len(olds) < maxEventFindings:
			olds = append(olds, f.Finding)
		}
	}
	return news, olds
}

// eventFindings are the findings gate.evaluated carries, new ones first,
// and how many of the build's issues did not fit.
func eventFindings(in *inputs) ([]*eventsv1.GateFinding, int64) {
	var out []*eventsv1.GateFinding
	add := func(fs []report.Finding, isNew bool) {
		for i := range fs {
			if len(out) == maxEventFindings {
				return
			}
			f := &fs[i]
			out = append(out, &eventsv1.GateFinding{Tool: f.Tool, Rule: f.Rule, Level: f.Level, Path: f.Path,
				Line: clampInt32(f.Line), Column: clampInt32(f.Column), Message: cutText(f.Message, maxFindingMessage),
				IsNew: isNew, Fingerprint: f.FingerprintHex()})
		}
	}
	add(in.newFindings, true)
	add(in.oldFindings, false)
	return out, max(in.issues-int64(len(out)), 0)
}

func clampInt32(n int) int32 { return int32(min(max(n, 0), math.MaxInt32)) }

// cutText cuts s to at most n bytes on a rune boundary, marking the cut.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// baseBuild is the newest other build of the base ref that has an
// evaluation, or "".
func baseBuild(ctx context.Context, tx *bus.Tx, b *buildRow, needCoverage bool) (string, error) {
	if b.baseRef == "" {
		return "", nil
	}
	q := `SELECT build_id FROM gate_evaluations WHERE repository = $1 AND ref = $2 AND build_id <> $3`
	if needCoverage {
		q += ` AND coverage IS NOT NULL`
	}
	q += ` ORDER BY number DESC LIMIT 1`
	var id string
	err := tx.QueryRowContext(ctx, q, b.repo, b.baseRef, b.id).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

func baseCoverage(ctx context.Context, tx *bus.Tx, b *buildRow) (float64, bool, error) {
	id, err := baseBuild(ctx, tx, b, true)
	if err != nil || id == "" {
		return 0, false, err
	}
	var c float64
	err = tx.QueryRowContext(ctx, `SELECT coverage FROM gate_evaluations WHERE build_id = $1`, id).Scan(&c)
	return c, err == nil, err
}

// baseFingerprints are the findings of the base ref's last analysis; nil
// when there is none (then every finding counts as new).
func baseFingerprints(ctx context.Context, tx *bus.Tx, b *buildRow) (report.Base, error) {
	if b.baseRef == "" {
		return nil, nil
	}
	var id string
	err := tx.QueryRowContext(ctx, `SELECT e.build_id FROM gate_evaluations e WHERE e.repository = $1 AND e.ref = $2 AND e.build_id <> $3
		AND EXISTS (SELECT 1 FROM gate_reports r WHERE r.build_id = e.build_id AND r.format <> 'metrics' AND r.error = '')
		ORDER BY e.number DESC LIMIT 1`, b.repo, b.baseRef, b.id).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT fingerprints FROM gate_reports WHERE build_id = $1 AND format <> 'metrics' AND error = ''`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	base := report.Base{}
	for rows.Next() {
		var fps []byte
		if err := rows.Scan(&fps); err != nil {
			return nil, err
		}
		p, err := report.DecodeFingerprints(fps)
		if err != nil {
			return nil, err
		}
		for _, x := range p {
			base[x.Fingerprint] = struct{}{}
		}
	}
	return base, rows.Err()
}

// judgement is an evaluation and the new findings to show with it.
type judgement struct {
	ev          *eventsv1.GateEvaluated
	newFindings []report.Finding
}

// judge turns inputs into an evaluation; it touches no database.
func judge(in *inputs) judgement {
	ev := &eventsv1.GateEvaluated{PolicySource: in.source, Issues: in.issues, NewIssues: in.newIssues}
	ev.Findings, ev.FindingsTruncated = eventFindings(in)
	j := judgement{ev: ev}
	j.newFindings = in.newFindings[:min(len(in.newFindings), maxNewFindingsTable)]
	p, cerr := compile(in.pol)
	if p != nil {
		res := p.Evaluate(in.measures, in.newLines)
		for _, r := range res.Results {
			ev.Conditions = append(ev.Conditions, &eventsv1.ConditionResult{
				Metric: r.Metric, Operator: r.Operator, Threshold: r.Threshold, Scope: r.Scope, Expression: r.Expression,
				Value: r.Value, HasValue: r.HasValue, Verdict: r.Verdict, Detail: r.Detail,
			})
		}
		switch res.Status {
		case policy.Passed:
			ev.Status = eventsv1.GateStatus_GATE_STATUS_PASSED
		case policy.Failed:
			ev.Status = eventsv1.GateStatus_GATE_STATUS_FAILED
		default:
			ev.Status = eventsv1.GateStatus_GATE_STATUS_ERROR
		}
		// A test stage that errored or reported nothing fails the gate
		// whatever the conditions say, unless the gate allows no data.
		allowed := gatepolicy.NoDataPasses("", p.OnNoData)
		if in.noData != "" && !allowed && ev.Status == eventsv1.GateStatus_GATE_STATUS_PASSED {
			ev.Status = eventsv1.GateStatus_GATE_STATUS_FAILED
		}
		ev.Summary = summary(ev.Status, res.Results, in.noData)
	}
	// Errors win: a report that cannot be read, a policy that cannot
	// compile, a build that did not succeed are never a silent pass.
	var why []string
	if cerr != nil {
		why = append(why, "policy "+cerr.Error())
	}
	why = append(why, in.reportErrors...)
	if st := eventsv1.BuildStatus(in.b.status); st == eventsv1.BuildStatus_BUILD_STATUS_FAILURE || st == eventsv1.BuildStatus_BUILD_STATUS_ERROR {
		why = append(why, fmt.Sprintf("build #%d %s: nothing to judge", in.b.number, strings.ToLower(strings.TrimPrefix(st.String(), "BUILD_STATUS_"))))
	}
	if len(why) > 0 {
		ev.Status = eventsv1.GateStatus_GATE_STATUS_ERROR
		ev.Summary = "gate error: " + strings.Join(why, "; ")
	}
	return j
}

func compile(pp *eventsv1.GatePolicy) (*policy.Policy, error) {
	p := &policy.Policy{Expression: pp.GetExpression(), MinNewLines: int(pp.GetMinNewLines()), OnNoData: pp.GetOnNoData()}
	for _, c := range pp.GetConditions() {
		scope := c.GetScope()
		if scope == "" {
			scope = gatepolicy.ScopeOverall
		}
		p.Conditions = append(p.Conditions, policy.Condition{
			Condition: gatepolicy.Condition{Metric: c.GetMetric(), Operator: c.GetOperator(), Threshold: c.GetThreshold(), Scope: scope, OnNoData: c.GetOnNoData()},
			File:      c.GetFile(), Line: int(c.GetLine()),
		})
	}
	if err := policy.Compile(p, pp.GetExpressionFile(), int(pp.GetExpressionLine())); err != nil {
		return nil, err
	}
	return p, nil
}

// summary is the one line a forge shows: how many conditions were met,
// then what failed, then what had no data ("gate failed: 2 of 3 conditions
// met; coverage: no data (no coverage report arrived); set on_no_data: pass
// to allow"). A condition without data is never counted as met. missing is
// what the test stage did not deliver, or "".
func summary(st eventsv1.GateStatus, rs []policy.Result, missing string) string {
	var failed, errs, noData, allowed, notJudged []string
	met := 0
	for _, r := range rs {
		switch r.Verdict {
		case policy.Failed:
			failed = append(failed, r.Describe())
		case policy.Error:
			errs = append(errs, r.Describe()+": "+r.Detail)
		case policy.Passed:
			met++
		case policy.NoData:
			if r.NoDataPasses {
				allowed = append(allowed, r.Describe())
			} else {
				noData = append(noData, r.Describe())
			}
		case policy.NotJudged:
			notJudged = append(notJudged, r.Describe()+": not judged, "+r.Detail)
		}
	}
	counted := fmt.Sprintf("%d of %d conditions met", met, len(rs))
	switch st {
	case eventsv1.GateStatus_GATE_STATUS_FAILED:
		var parts []string
		if missing != "" {
			parts = append(parts, missing)
		}
		parts = append(append(parts, failed...), noData...)
		s := "gate failed: " + counted + "; " + strings.Join(parts, ", ")
		if missing != "" || len(noData) > 0 {
			s += "; " + gatepolicy.NoDataHint
		}
		return s
	case eventsv1.GateStatus_GATE_STATUS_ERROR:
		return "gate error: " + strings.Join(errs, ", ")
	}
	s := "gate passed: " + counted
	if missing != "" {
		allowed = append([]string{missing}, allowed...)
	}
	if len(notJudged) > 0 {
		s += "; " + strings.Join(notJudged, ", ")
	}
	if len(allowed) > 0 {
		s += "; " + strings.Join(allowed, ", ") + " (allowed by " + gatepolicy.OnNoDataKey + ": " + gatepolicy.OnNoDataPass + ")"
	}
	return s
}

// storedPolicy is the repository's policy, else the installation's, else
// the built-in default.
func (s *Service) storedPolicy(ctx context.Context, q querier, repo string) (*eventsv1.GatePolicy, string, error) {
	for _, c := range []struct{ repo, source string }{{repo, "repository"}, {"", "installation"}} {
		if c.repo == "" && c.source == "repository" {
			continue
		}
		var raw []byte
		err := q.QueryRowContext(ctx, `SELECT policy FROM gate_policies WHERE repository = $1`, c.repo).Scan(&raw)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		p := &eventsv1.GatePolicy{}
		if err := proto.Unmarshal(raw, p); err != nil {
			return nil, "", err
		}
		return p, c.source, nil
	}
	return DefaultPolicy(), "default", nil
}

// DefaultPolicy is the built-in policy (see gatepolicy.Default).
func DefaultPolicy() *eventsv1.GatePolicy {
	p := &eventsv1.GatePolicy{}
	for _, c := range gatepolicy.Default() {
		p.Conditions = append(p.Conditions, &eventsv1.GateCondition{Metric: c.Metric, Operator: c.Operator, Threshold: c.Threshold, Scope: c.Scope})
	}
	return p
}
