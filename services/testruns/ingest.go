// Reading reports into a run: test results with their history, coverage,
// added lines; and finishing a run when its last job is in.

package testruns

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/testruns/report"
)

// parsedReport is one report read before the transaction, or, for JUnit
// XML, only recognised: those are streamed into the transaction (see
// streamReport).
type parsedReport struct {
	name   string
	format string
	p      *report.Parsed
	err    error // the report's own failure: recorded, not retried
	read   time.Duration
	// stream is set for a JUnit report, read again from the Object Store
	// under key inside the transaction.
	stream   bool
	key      string
	prefixes []string
}

// jobReports is what prepareJobEvent hands the handler.
type jobReports struct {
	reports []parsedReport
}

// prepareJobEvent reads the reports of a finished test job from the Object
// Store, outside the transaction (a large report takes seconds). JUnit
// reports, the large ones (100 MB and 500,000 cases happen), are only
// recognised here: held whole they took more than 500 MB.
func (s *Service) prepareJobEvent(ctx context.Context, ev bus.Event) (any, error) {
	d, ok := ev.Data.(*eventsv1.JobFinished)
	if !ok {
		return nil, nil
	}
	var runID string
	err := s.db.QueryRowContext(ctx, `SELECT run_id FROM test_jobs WHERE job_id = $1`, d.JobId).Scan(&runID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil // a build or deploy job
	}
	if err != nil {
		return nil, err
	}
	out := &jobReports{}
	if len(d.Reports) == 0 {
		return out, nil
	}
	obs, err := s.reportStore(ctx)
	if err != nil {
		return nil, err
	}
	for _, rf := range d.Reports {
		pr := parsedReport{name: rf.Name, key: rf.Key, prefixes: rf.PathPrefixes}
		start := time.Now()
		obj, err := obs.Get(ctx, rf.Key)
		if err != nil {
			if ctx.Err() != nil || storeUnavailable(err) {
				// Handled again later: a report is not unreadable because a
				// NATS node was away when it was read.
				return nil, fmt.Errorf("%s: reading stored report %s: %w", rf.Name, rf.Key, err)
			}
			pr.err = fmt.Errorf("%s: reading stored report %s: %w", rf.Name, rf.Key, err)
			out.reports = append(out.reports, pr)
			continue
		}
		br := bufio.NewReaderSize(obj, 64<<10)
		head, _ := br.Peek(4096)
		if report.Detect(head) == report.FormatJUnit {
			pr.stream, pr.format = true, report.FormatJUnit
		} else {
			pr.p, pr.err = report.Parse(br, "", report.Paths{Prefixes: rf.PathPrefixes}, s.parseOptions(rf.Name))
		}
		obj.Close()
		pr.read = time.Since(start)
		if pr.p != nil {
			pr.format = pr.p.Format
		}
		out.reports = append(out.reports, pr)
	}
	return out, nil
}

func (s *Service) handleJobEvent(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	d, ok := ev.Data.(*eventsv1.JobFinished)
	if !ok || tx.Prepared == nil {
		return nil
	}
	prep := tx.Prepared.(*jobReports)
	var runID string
	var attempt, status int
	if err := tx.QueryRowContext(ctx, `SELECT run_id, attempt, status FROM test_jobs WHERE job_id = $1`, d.JobId).Scan(&runID, &attempt, &status); err != nil {
		return err
	}
	if status != 0 {
		return nil // a redelivered job's second report
	}
	run, err := loadRunRow(ctx, tx, runID)
	if err != nil {
		return err
	}
	if run.finishedAt != 0 {
		return nil
	}
	errText := d.Error
	if errText == "" && d.FailedStep != "" {
		errText = "step " + d.FailedStep + " failed"
	}
	if _, err := tx.ExecContext(ctx, `UPDATE test_jobs SET status = $1, error = $2 WHERE job_id = $3`, int32(d.Status), errText, d.JobId); err != nil {
		return err
	}
	for _, pr := range prep.reports {
		if err := s.storeReport(ctx, tx, run, d.JobId, attempt, pr); err != nil {
			return err
		}
	}
	done := run.jobsDone + 1
	total := run.jobsTotal
	// A failed job runs once more when the plan asks; tests that pass the
	// second time are flaky (both outcomes on one commit).
	if d.Status == eventsv1.BuildStatus_BUILD_STATUS_FAILURE && attempt == 1 && run.retries > 0 {
		var spec []byte
		if err := tx.QueryRowContext(ctx, `SELECT spec FROM test_jobs WHERE job_id = $1`, d.JobId).Scan(&spec); err != nil {
			return err
		}
		job := &eventsv1.Job{}
		if err := proto.Unmarshal(spec, job); err != nil {
			return err
		}
		job.JobId = bus.NewID()
		job.QueuedAt = timestamppb.Now()
		if err := s.enqueueJob(ctx, tx, runID, job, 2); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE test_jobs SET retried = 1 WHERE job_id = $1`, d.JobId); err != nil {
			return err
		}
		total++
	}
	if _, err := tx.ExecContext(ctx, `UPDATE test_runs SET jobs_done = $1, jobs_total = $2 WHERE id = $3`, done, total, runID); err != nil {
		return err
	}
	if done >= total {
		return s.finishRun(ctx, tx, runID)
	}
	return nil
}

type runRow struct {
	id, buildID, repository, ref, commit, version, chainID string
	status                                                 int32
	jobsTotal, jobsDone, retries                           int
	startedAt, finishedAt                                  int64
	rawUnit                                                string
	rawCovered, rawTotal                                   int64
}

func loadRunRow(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (*runRow, error) {
	r := &runRow{id: id}
	err := q.QueryRowContext(ctx, `SELECT build_id, repository, ref, commit_sha, version, chain_id, status, jobs_total, jobs_done, retries, started_at, finished_at, raw_unit, raw_covered, raw_total
		FROM test_runs WHERE id = $1`, id).Scan(&r.buildID, &r.repository, &r.ref, &r.commit, &r.version, &r.chainID, &r.status,
		&r.jobsTotal, &r.jobsDone, &r.retries, &r.startedAt, &r.finishedAt, &r.rawUnit, &r.rawCovered, &r.rawTotal)
	return r, err
}

// storeReport records one report of a run: its row, and its test results,
// coverage or added lines. A report that could not be read marks itself
// (and later the run) as failed, never the service.
func (s *Service) storeReport(ctx context.Context, tx *bus.Tx, run *runRow, jobID string, attempt int, pr parsedReport) error {
	if pr.stream {
		return s.streamReport(ctx, tx, run, jobID, attempt, pr)
	}
	now := time.Now().UTC().UnixNano()
	errText := ""
	if pr.err != nil {
		errText = pr.err.Error()
	}
	var cases int64
	if pr.p != nil && pr.p.Tests != nil {
		cases = int64(len(pr.p.Tests.Cases))
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO test_reports (run_id, job_id, name, format, error, cases, created_at, object_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		run.id, jobID, pr.name, pr.format, errText, cases, now, pr.key); err != nil {
		return err
	}
	if pr.p == nil {
		return nil
	}
	switch {
	case pr.p.Tests != nil:
		start := time.Now()
		if err := s.storeCases(ctx, tx, run, jobID, attempt, pr.p.Tests.Cases, now); err != nil {
			return err
		}
		s.log.Info("report stored", "run", run.id, "job", jobID, "report", pr.name, "format", pr.format, "cases", cases,
			"read", pr.read.Round(time.Millisecond), "write", time.Since(start).Round(time.Millisecond))
		return nil
	case pr.p.Coverage != nil:
		return s.storeCoverage(ctx, tx, run, pr.p.Coverage)
	case pr.p.Added != nil:
		for path, lines := range pr.p.Added {
			hits := make(map[int]int64, len(lines))
			for _, l := range lines {
				hits[l] = 1
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO run_diffs (run_id, path, lines) VALUES ($1, $2, $3)
				ON CONFLICT (run_id, path) DO UPDATE SET lines = excluded.lines`, run.id, path, encodeLines(hits)); err != nil {
				return err
			}
		}
	}
	return nil
}

// streamReport reads a JUnit report from the Object Store and writes its
// cases while it is parsed: the parse runs on a goroutine of its own and
// hands batches over a short channel, so memory holds a few batches
// whatever the report's size, and parsing overlaps the database's work. A
// report found broken halfway is rolled back to a savepoint and recorded
// with its error and no cases, as if it had been read before the
// transaction.
func (s *Service) streamReport(ctx context.Context, tx *bus.Tx, run *runRow, jobID string, attempt int, pr parsedReport) error {
	start := time.Now()
	now := start.UTC().UnixNano()
	if _, err := tx.ExecContext(ctx, `SAVEPOINT report_cases`); err != nil {
		return err
	}
	w := &caseWriter{ctx: ctx, tx: tx, engine: s.db.Engine, run: run, jobID: jobID, attempt: attempt, now: now, maxText: s.cfg.MaxText}
	defer w.close()
	parseTook, perr, err := s.parseInto(ctx, pr, w)
	if err != nil {
		return err
	}
	errText := ""
	if perr != nil {
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT report_cases`); err != nil {
			return err
		}
		errText, w.cases = perr.Error(), 0
	}
	if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT report_cases`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO test_reports (run_id, job_id, name, format, error, cases, created_at, object_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		run.id, jobID, pr.name, pr.format, errText, w.cases, now, pr.key); err != nil {
		return err
	}
	s.log.Info("report stored", "run", run.id, "job", jobID, "report", pr.name, "format", pr.format, "cases", w.cases, "error", errText,
		"took", time.Since(start).Round(time.Millisecond), "parse", parseTook.Round(time.Millisecond), "write", w.took.Round(time.Millisecond))
	return nil
}

// parseInto parses the stored report pr into w and says how long parsing
// took (waits for the writer left out). It returns the report's own
// failure (unreadable, not JUnit, broken halfway) apart from err, a failure
// to write or a cancelled ctx, which fails the transaction.
//
// The report is first copied to a temporary file: an Object Store reader
// must be drained at the pace NATS delivers the chunks (a reader that waits
// on the database for seconds fails with a timeout), and the file keeps
// memory flat where a buffer would hold the whole report.
func (s *Service) parseInto(ctx context.Context, pr parsedReport, w *caseWriter) (took time.Duration, perr, err error) {
	obs, err := s.reportStore(ctx)
	if err != nil {
		return 0, nil, err
	}
	spool, done, err := bus.SpoolObject(ctx, obs, pr.key)
	if err != nil {
		var pe *fs.PathError
		switch {
		case ctx.Err() != nil:
			return 0, nil, ctx.Err()
		case errors.As(err, &pe):
			return 0, nil, fmt.Errorf("%s: spooling the report: %w", pr.name, err)
		case storeUnavailable(err):
			return 0, nil, fmt.Errorf("%s: reading stored report %s: %w", pr.name, pr.key, err)
		}
		return 0, fmt.Errorf("%s: reading stored report %s: %w", pr.name, pr.key, err), nil
	}
	defer done()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []report.Case, 2)
	go func() {
		defer close(batches)
		start := time.Now()
		var waited time.Duration // for the writer: not parsing
		batch := make([]report.Case, 0, caseBatch)
		send := func() error {
			t := time.Now()
			defer func() { waited += time.Since(t) }()
			select {
			case batches <- batch:
				batch = make([]report.Case, 0, caseBatch)
				return nil
			case <-pctx.Done():
				return pctx.Err()
			}
		}
		_, perr = report.ParseStream(spool, report.FormatJUnit, report.Paths{Prefixes: pr.prefixes}, s.parseOptions(pr.name), func(c report.Case) error {
			batch = append(batch, c)
			if len(batch) == caseBatch {
				return send()
			}
			return nil
		})
		if perr == nil && len(batch) > 0 {
			perr = send()
		}
		took = time.Since(start) - waited
	}()
	for b := range batches {
		if err == nil {
			if err = w.write(b); err != nil {
				cancel() // the parser stops at its next batch
			}
		}
	}
	switch {
	case err != nil:
		return took, nil, err
	case ctx.Err() != nil:
		return took, nil, ctx.Err()
	}
	return took, perr, nil
}

// caseBatch is how many cases one statement writes. Row by row, 500,000
// cases were a million statements (an upsert and an insert each, a round
// trip apiece on PostgreSQL); in batches they are a thousand. On SQLite
// 1,000 rows of 13 parameters stay under its 32,766 parameters per
// statement; PostgreSQL gets a batch as one array per column.
const caseBatch = 1000

// storeCases writes the cases of a report: each test's running statistics
// in tests and one row per case in test_results (the history), a batch at a
// time, all in the caller's transaction.
func (s *Service) storeCases(ctx context.Context, tx *bus.Tx, run *runRow, jobID string, attempt int, cases []report.Case, now int64) error {
	w := &caseWriter{ctx: ctx, tx: tx, engine: s.db.Engine, run: run, jobID: jobID, attempt: attempt, now: now, maxText: s.cfg.MaxText}
	defer w.close()
	for start := 0; start < len(cases); start += caseBatch {
		if err := w.write(cases[start:min(len(cases), start+caseBatch)]); err != nil {
			return err
		}
	}
	return nil
}

// caseWriter writes batches of cases; the statements for a full batch are
// prepared once per report.
type caseWriter struct {
	ctx              context.Context
	tx               *bus.Tx
	engine           store.Engine
	run              *runRow
	jobID            string
	attempt, maxText int
	now              int64
	upsertFull       *sql.Stmt
	insertFull       *sql.Stmt
	cases            int64         // written so far
	took             time.Duration // spent writing
}

func (w *caseWriter) close() {
	if w.upsertFull != nil {
		w.upsertFull.Close()
	}
	if w.insertFull != nil {
		w.insertFull.Close()
	}
}

// testAgg is one test identity's share of a batch.
type testAgg struct {
	c                   *report.Case // the last case of the identity: its status is the test's last
	runs, failures, dur int64
}

func (w *caseWriter) write(cases []report.Case) error {
	start := time.Now()
	defer func() { w.took += time.Since(start) }()
	// One row per identity: an upsert may not touch a row twice, and a
	// report may list a test several times (go test -count=3, reruns).
	idx := make(map[string]int, len(cases))
	keys := make([]string, len(cases))
	var aggs []testAgg
	for i := range cases {
		c := &cases[i]
		keys[i] = c.ID()
		k, ok := idx[keys[i]]
		if !ok {
			k = len(aggs)
			idx[keys[i]] = k
			aggs = append(aggs, testAgg{})
		}
		a := &aggs[k]
		a.c = c
		a.runs++
		a.dur += int64(c.Duration)
		if c.Status.Bad() {
			a.failures++
		}
	}
	rows, err := w.upsertTests(aggs)
	if err != nil {
		return fmt.Errorf("recording %d tests: %w", len(aggs), err)
	}
	ids := make([]int64, len(aggs))
	for rows.Next() {
		var id int64
		var suite, class, name string
		if err := rows.Scan(&id, &suite, &class, &name); err != nil {
			rows.Close()
			return err
		}
		k, ok := idx[suite+"\x00"+class+"\x00"+name]
		if !ok {
			rows.Close()
			return fmt.Errorf("recording tests: the database returned test %q (suite %q, class %q), which the batch does not hold", name, suite, class)
		}
		ids[k] = id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("recording %d tests: %w", len(aggs), err)
	}
	testIDs := make([]int64, len(cases))
	for i := range cases {
		c := &cases[i]
		testIDs[i] = ids[idx[keys[i]]]
		if testIDs[i] == 0 {
			return fmt.Errorf("recording tests: no id returned for test %s", c.Name)
		}
		if c.Flaky {
			if _, err := w.tx.ExecContext(w.ctx, `UPDATE tests SET last_flaky = $1, flaky_count = flaky_count + 1 WHERE id = $2`, w.now, testIDs[i]); err != nil {
				return err
			}
		}
	}
	if err := w.insertResults(cases, testIDs); err != nil {
		return fmt.Errorf("recording %d results: %w", len(cases), err)
	}
	w.cases += int64(len(cases))
	return nil
}

// upsertTests adds the batch's runs to each test's statistics and returns
// each test's id with its identity. On PostgreSQL the rows travel as one
// array per column (unnest): a thousand rows are 9 parameters, not 10,000,
// and the statement is planned once.
func (w *caseWriter) upsertTests(aggs []testAgg) (*sql.Rows, error) {
	if w.engine == store.Postgres {
		var suites, classes, names, statuses []string
		var runs, failures, durs []int64
		for _, a := range aggs {
			suites, classes, names = append(suites, a.c.Suite), append(classes, a.c.Class), append(names, a.c.Name)
			runs, failures, durs = append(runs, a.runs), append(failures, a.failures), append(durs, a.dur)
			statuses = append(statuses, string(a.c.Status))
		}
		return w.tx.QueryContext(w.ctx, `INSERT INTO tests (repository, suite, class_name, name, runs, failures, total_duration_ns, last_status, first_seen, last_seen)
			SELECT $1, u.suite, u.class_name, u.name, u.runs, u.failures, u.dur, u.status, $2, $2
			FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[]) AS u(suite, class_name, name, runs, failures, dur, status)
			`+testsOnConflict, w.run.repository, w.now, suites, classes, names, runs, failures, durs, statuses)
	}
	args := make([]any, 0, len(aggs)*testsUpsertCols)
	for _, a := range aggs {
		args = append(args, w.run.repository, a.c.Suite, a.c.Class, a.c.Name, a.runs, a.failures, a.dur, string(a.c.Status), w.now, w.now)
	}
	stmt, err := w.prepared(&w.upsertFull, len(aggs), testsUpsertSQL)
	if err != nil {
		return nil, err
	}
	if stmt == nil {
		return w.tx.QueryContext(w.ctx, testsUpsertSQL(len(aggs)), args...)
	}
	return stmt.QueryContext(w.ctx, args...)
}

// insertResults adds one history row per case.
func (w *caseWriter) insertResults(cases []report.Case, testIDs []int64) error {
	if w.engine == store.Postgres {
		var statuses, messages, details, files []string
		var durs []int64
		var lines, flaky []int32
		for i := range cases {
			c := &cases[i]
			statuses, durs = append(statuses, string(c.Status)), append(durs, int64(c.Duration))
			messages, details = append(messages, report.Truncate(c.Message, w.maxText)), append(details, report.Truncate(c.Details, w.maxText))
			files, lines = append(files, c.File), append(lines, int32(c.Line))
			flaky = append(flaky, boolInt(c.Flaky))
		}
		_, err := w.tx.ExecContext(w.ctx, `INSERT INTO test_results (test_id, run_id, job_id, attempt, commit_sha, status, duration_ns, message, details, file, line, flaky, created_at)
			SELECT u.test_id, $1, $2, $3, $4, u.status, u.dur, u.message, u.details, u.file, u.line, u.flaky, $5
			FROM unnest($6::bigint[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::int[], $13::int[]) AS u(test_id, status, dur, message, details, file, line, flaky)`,
			w.run.id, w.jobID, w.attempt, w.run.commit, w.now, testIDs, statuses, durs, messages, details, files, lines, flaky)
		return err
	}
	args := make([]any, 0, len(cases)*resultsInsertCols)
	for i := range cases {
		c := &cases[i]
		args = append(args, testIDs[i], w.run.id, w.jobID, w.attempt, w.run.commit, string(c.Status), int64(c.Duration),
			report.Truncate(c.Message, w.maxText), report.Truncate(c.Details, w.maxText), c.File, c.Line, boolInt(c.Flaky), w.now)
	}
	stmt, err := w.prepared(&w.insertFull, len(cases), resultsInsertSQL)
	if err != nil {
		return err
	}
	if stmt == nil {
		_, err = w.tx.ExecContext(w.ctx, resultsInsertSQL(len(cases)), args...)
	} else {
		_, err = stmt.ExecContext(w.ctx, args...)
	}
	return err
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// prepared returns the SQLite statement for a full batch, prepared on
// first use, or nil for a batch of another size (the last one, or one whose
// cases repeat tests), which runs unprepared rather than leaving a
// statement per size open until the transaction ends.
func (w *caseWriter) prepared(full **sql.Stmt, n int, build func(int) string) (*sql.Stmt, error) {
	if n != caseBatch {
		return nil, nil
	}
	if *full == nil {
		st, err := w.tx.PrepareContext(w.ctx, build(n))
		if err != nil {
			return nil, err
		}
		*full = st
	}
	return *full, nil
}

// valuesSQL is "(?,…),(?,…)" for n rows of cols parameters each:
// anonymous parameters, because SQLite looks a numbered one ($7) up by
// scanning the statement's list of names for each parameter bound, which is
// quadratic in their number (seconds per report).
func valuesSQL(b *strings.Builder, n, cols int) {
	row := "(" + strings.Repeat("?,", cols-1) + "?)"
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
}

const testsOnConflict = `ON CONFLICT (repository, suite, class_name, name) DO UPDATE SET runs = tests.runs + excluded.runs, failures = tests.failures + excluded.failures,
	total_duration_ns = tests.total_duration_ns + excluded.total_duration_ns, last_status = excluded.last_status, last_seen = excluded.last_seen
	RETURNING id, suite, class_name, name`

const testsUpsertCols = 10

// testsUpsertSQL adds n tests' runs to their statistics (SQLite). RETURNING
// names each row's test: neither engine promises the rows in VALUES order.
func testsUpsertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO tests (repository, suite, class_name, name, runs, failures, total_duration_ns, last_status, first_seen, last_seen) VALUES `)
	valuesSQL(&b, n, testsUpsertCols)
	b.WriteString(" " + testsOnConflict)
	return b.String()
}

const resultsInsertCols = 13

// resultsInsertSQL adds n results (SQLite).
func resultsInsertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO test_results (test_id, run_id, job_id, attempt, commit_sha, status, duration_ns, message, details, file, line, flaky, created_at) VALUES `)
	valuesSQL(&b, n, resultsInsertCols)
	return b.String()
}

func (s *Service) storeCoverage(ctx context.Context, tx *bus.Tx, run *runRow, cov *report.Coverage) error {
	for i := range cov.Files {
		f := &cov.Files[i]
		lines := f.Lines
		var old []byte
		err := tx.QueryRowContext(ctx, `SELECT lines FROM coverage_files WHERE run_id = $1 AND path = $2`, run.id, f.Path).Scan(&old)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			// Several reports (shards, languages) cover one file: hits add up.
			merged := decodeLines(old)
			for l, h := range lines {
				merged[l] += h
			}
			lines = merged
		}
		fc := report.FileCoverage{Path: f.Path, Lines: lines}
		c := fc.LineCounter()
		if _, err := tx.ExecContext(ctx, `INSERT INTO coverage_files (run_id, path, lines, lines_covered, lines_total, branches_covered, branches_total)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (run_id, path) DO UPDATE SET lines = excluded.lines, lines_covered = excluded.lines_covered, lines_total = excluded.lines_total,
				branches_covered = coverage_files.branches_covered + excluded.branches_covered, branches_total = coverage_files.branches_total + excluded.branches_total`,
			run.id, f.Path, encodeLines(lines), c.Covered, c.Total, f.BranchesCovered, f.BranchesTotal); err != nil {
			return err
		}
	}
	// The tools' own figures add up while they share a unit.
	unit := string(cov.Raw.Unit)
	covered, total := cov.Raw.Covered, cov.Raw.Total
	switch run.rawUnit {
	case "":
	case unit:
		covered += run.rawCovered
		total += run.rawTotal
	default:
		unit, covered, total = "mixed", 0, 0
	}
	run.rawUnit, run.rawCovered, run.rawTotal = unit, covered, total
	_, err := tx.ExecContext(ctx, `UPDATE test_runs SET has_coverage = 1, raw_unit = $1, raw_covered = $2, raw_total = $3 WHERE id = $4`, unit, covered, total, run.id)
	return err
}

// finishRun settles a run: its counts, flaky tests, coverage, status; and
// publishes testrun.finished.
func (s *Service) finishRun(ctx context.Context, tx *bus.Tx, runID string) error {
	run, err := loadRunRow(ctx, tx, runID)
	if err != nil {
		return err
	}
	if run.finishedAt != 0 {
		return nil
	}
	now := time.Now().UTC()
	// Flaky: a test of this run that, on this commit, has both a failed and
	// a passed result (in this run, a rerun, or another build of the commit).
	// Either it failed in this run and passed somewhere on the commit, or it
	// passed in this run and failed in another run of the commit. Both
	// start from failures (test_results_run_failed), a few thousand where
	// the run may have 500,000 results.
	flakyIDs := map[int64]bool{}
	rows, err := tx.QueryContext(ctx, `SELECT f.test_id FROM test_results f
		WHERE f.run_id = $2 AND f.status IN ('failed', 'error')
		  AND EXISTS (SELECT 1 FROM test_results p WHERE p.test_id = f.test_id AND p.commit_sha = $1 AND p.status = 'passed')
		UNION
		SELECT f.test_id FROM test_runs o JOIN test_results f ON f.run_id = o.id
		WHERE o.commit_sha = $1 AND o.id <> $2 AND f.status IN ('failed', 'error')
		  AND EXISTS (SELECT 1 FROM test_results p WHERE p.test_id = f.test_id AND p.commit_sha = $1 AND p.run_id = $2 AND p.status = 'passed')`,
		run.commit, run.id)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		flakyIDs[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for id := range flakyIDs {
		if _, err := tx.ExecContext(ctx, `UPDATE tests SET last_flaky = $1, flaky_count = flaky_count + 1 WHERE id = $2`, now.UnixNano(), id); err != nil {
			return err
		}
		// By (test_id, commit_sha): the run's own index would read every
		// result of the run for each flaky test.
		if _, err := tx.ExecContext(ctx, `UPDATE test_results SET flaky = 1 WHERE test_id = $1 AND commit_sha = $2 AND run_id = $3 AND status = 'passed'`, id, run.commit, run.id); err != nil {
			return err
		}
	}
	counts, err := runCounts(ctx, tx, run.id, flakyIDs)
	if err != nil {
		return err
	}
	cov, err := s.settleCoverage(ctx, tx, run)
	if err != nil {
		return err
	}
	status, errText, err := runStatus(ctx, tx, run.id, counts)
	if err != nil {
		return err
	}
	dur := now.Sub(time.Unix(0, run.startedAt))
	var lc, lt, pc, pt int64
	if cov != nil {
		lc, lt, pc, pt = cov.LinesCovered, cov.LinesTotal, cov.PatchCovered, cov.PatchTotal
	}
	if _, err := tx.ExecContext(ctx, `UPDATE test_runs SET status = $1, tests = $2, passed = $3, failed = $4, errors = $5, skipped = $6, disabled = $7,
		flaky = $8, quarantined = $9, duration_ns = $10, lines_covered = $11, lines_total = $12, patch_covered = $13, patch_total = $14,
		error = $15, finished_at = $16 WHERE id = $17 AND finished_at = 0`,
		int32(status), counts.Tests, counts.Passed, counts.Failed, counts.Errors, counts.Skipped, counts.Disabled, counts.Flaky, counts.Quarantined,
		int64(dur), lc, lt, pc, pt, errText, now.UnixNano(), run.id); err != nil {
		return err
	}
	failures, err := runFailures(ctx, tx, run.id)
	if err != nil {
		return err
	}
	return tx.Publish(bus.Event{Type: "testrun.finished", Repository: run.repository, Subject: run.id, ChainID: run.chainID, Data: &eventsv1.TestRunFinished{
		RunId: run.id, BuildId: run.buildID, Repository: run.repository, Ref: run.ref, Commit: run.commit, Version: run.version,
		Status: status, Counts: counts, Duration: durationpb.New(dur), Coverage: cov, Error: errText, FinishedAt: timestamppb.New(now),
		Failures: failures,
	}})
}

// runFailures lists up to 50 failing tests of a run, for the event: the
// dashboards and Harbormaster show them without asking for the run. The
// passed-in-this-run check goes by (test_id, commit_sha), which a run's
// results share: by the run's index it read the whole run once per failed
// result, minutes for a report of 500,000 cases.
func runFailures(ctx context.Context, tx *bus.Tx, runID string) ([]*eventsv1.FailedTest, error) {
	rows, err := tx.QueryContext(ctx, `SELECT t.suite, t.class_name, t.name, r.status, r.message FROM test_results r JOIN tests t ON t.id = r.test_id
		WHERE r.run_id = $1 AND r.status IN ('failed', 'error') AND t.quarantined = 0 AND r.flaky = 0
		  AND NOT EXISTS (SELECT 1 FROM test_results p WHERE p.test_id = r.test_id AND p.commit_sha = r.commit_sha AND p.run_id = r.run_id AND p.status = 'passed')
		ORDER BY t.suite, t.class_name, t.name LIMIT 50`, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*eventsv1.FailedTest
	seen := map[string]bool{}
	for rows.Next() {
		f := &eventsv1.FailedTest{}
		if err := rows.Scan(&f.Suite, &f.ClassName, &f.Name, &f.Status, &f.Message); err != nil {
			return nil, err
		}
		key := f.Suite + "\x00" + f.ClassName + "\x00" + f.Name
		if seen[key] {
			continue // several attempts or shards failed the same test
		}
		seen[key] = true
		if line, _, _ := strings.Cut(f.Message, "\n"); len(line) > 300 {
			f.Message = line[:300]
		} else {
			f.Message = line
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// runCounts folds a run's results into tests: per test the most severe
// result, except that flaky tests count as passed and failing quarantined
// tests count as quarantined.
func runCounts(ctx context.Context, tx *bus.Tx, runID string, flaky map[int64]bool) (*eventsv1.TestCounts, error) {
	rows, err := tx.QueryContext(ctx, `SELECT r.test_id, r.status, r.flaky, t.quarantined FROM test_results r JOIN tests t ON t.id = r.test_id WHERE r.run_id = $1`, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type agg struct {
		status             report.Status
		flaky, quarantined bool
	}
	tests := map[int64]*agg{}
	for rows.Next() {
		var id int64
		var st string
		var fl, q int
		if err := rows.Scan(&id, &st, &fl, &q); err != nil {
			return nil, err
		}
		a := tests[id]
		if a == nil {
			a = &agg{status: report.Status(st)}
			tests[id] = a
		}
		if report.Status(st).Severity() > a.status.Severity() {
			a.status = report.Status(st)
		}
		a.flaky = a.flaky || fl == 1 || flaky[id]
		a.quarantined = q == 1
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	c := &eventsv1.TestCounts{}
	for id, a := range tests {
		c.Tests++
		st := a.status
		if flaky[id] {
			st = report.StatusPassed
		}
		if a.flaky {
			c.Flaky++
		}
		switch {
		case st.Bad() && a.quarantined:
			c.Quarantined++
		case st == report.StatusPassed:
			c.Passed++
		case st == report.StatusFailed:
			c.Failed++
		case st == report.StatusError:
			c.Errors++
		case st == report.StatusSkipped:
			c.Skipped++
		case st == report.StatusDisabled:
			c.Disabled++
		}
	}
	return c, nil
}

// runStatus decides: failing tests fail the run; then a report that could
// not be read errors it; then a job that failed without failing tests to
// explain it (and was not rerun successfully) fails it.
func runStatus(ctx context.Context, tx *bus.Tx, runID string, c *eventsv1.TestCounts) (eventsv1.TestRunStatus, string, error) {
	if c.Failed+c.Errors > 0 {
		return eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED, fmt.Sprintf("%d failed, %d errors", c.Failed, c.Errors), nil
	}
	var name, rerr string
	err := tx.QueryRowContext(ctx, `SELECT name, error FROM test_reports WHERE run_id = $1 AND error <> '' ORDER BY id LIMIT 1`, runID).Scan(&name, &rerr)
	if err == nil {
		return eventsv1.TestRunStatus_TEST_RUN_STATUS_ERROR, "report " + rerr, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, "", err
	}
	rows, err := tx.QueryContext(ctx, `SELECT job_id, status, error, retried FROM test_jobs WHERE run_id = $1 ORDER BY attempt DESC, job_id`, runID)
	if err != nil {
		return 0, "", err
	}
	defer rows.Close()
	for rows.Next() {
		var job, jerr string
		var st, retried int
		if err := rows.Scan(&job, &st, &jerr, &retried); err != nil {
			return 0, "", err
		}
		if retried == 1 || st == int(eventsv1.BuildStatus_BUILD_STATUS_SUCCESS) {
			continue
		}
		if c.Quarantined > 0 && st == int(eventsv1.BuildStatus_BUILD_STATUS_FAILURE) {
			continue // the quarantined failures explain it
		}
		if jerr == "" {
			jerr = strings.ToLower(strings.TrimPrefix(eventsv1.BuildStatus(st).String(), "BUILD_STATUS_"))
		}
		if st == int(eventsv1.BuildStatus_BUILD_STATUS_ERROR) || st == int(eventsv1.BuildStatus_BUILD_STATUS_CANCELED) {
			return eventsv1.TestRunStatus_TEST_RUN_STATUS_ERROR, "job " + job + ": " + jerr, nil
		}
		return eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED, "job " + job + ": " + jerr, nil
	}
	return eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED, "", rows.Err()
}

// settleCoverage computes the run's line and patch coverage from its files;
// nil without coverage reports.
func (s *Service) settleCoverage(ctx context.Context, tx *bus.Tx, run *runRow) (*eventsv1.CoverageSummary, error) {
	var has int
	if err := tx.QueryRowContext(ctx, `SELECT has_coverage FROM test_runs WHERE id = $1`, run.id).Scan(&has); err != nil {
		return nil, err
	}
	if has == 0 {
		return nil, nil
	}
	added := map[string][]int{}
	rows, err := tx.QueryContext(ctx, `SELECT path, lines FROM run_diffs WHERE run_id = $1`, run.id)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var p string
		var b []byte
		if err := rows.Scan(&p, &b); err != nil {
			rows.Close()
			return nil, err
		}
		added[p] = slices.Sorted(maps.Keys(decodeLines(b)))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sum := &eventsv1.CoverageSummary{RawCovered: run.rawCovered, RawTotal: run.rawTotal, RawUnit: run.rawUnit}
	rows, err = tx.QueryContext(ctx, `SELECT path, lines FROM coverage_files WHERE run_id = $1 ORDER BY path`, run.id)
	if err != nil {
		return nil, err
	}
	type patch struct {
		path   string
		pc, pt int64
	}
	var patches []patch
	for rows.Next() {
		var p string
		var b []byte
		if err := rows.Scan(&p, &b); err != nil {
			rows.Close()
			return nil, err
		}
		fc := report.FileCoverage{Path: p, Lines: decodeLines(b)}
		c := fc.LineCounter()
		sum.LinesCovered += c.Covered
		sum.LinesTotal += c.Total
		if a := added[p]; len(a) > 0 {
			pc := report.Patch(&report.Coverage{Files: []report.FileCoverage{fc}}, map[string][]int{p: a})
			patches = append(patches, patch{p, pc.Covered, pc.Total})
			sum.PatchCovered += pc.Covered
			sum.PatchTotal += pc.Total
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, p := range patches {
		if _, err := tx.ExecContext(ctx, `UPDATE coverage_files SET patch_covered = $1, patch_total = $2 WHERE run_id = $3 AND path = $4`, p.pc, p.pt, run.id, p.path); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

// encodeLines stores line hits compactly: uvarint pairs of (line delta,
// hits) in line order.
func encodeLines(lines map[int]int64) []byte {
	keys := slices.Sorted(maps.Keys(lines))
	out := make([]byte, 0, len(keys)*3)
	prev := 0
	for _, l := range keys {
		out = binary.AppendUvarint(out, uint64(l-prev))
		out = binary.AppendUvarint(out, uint64(max(lines[l], 0)))
		prev = l
	}
	return out
}

func decodeLines(b []byte) map[int]int64 {
	out := map[int]int64{}
	line := 0
	for len(b) > 0 {
		d, n := binary.Uvarint(b)
		if n <= 0 {
			break
		}
		b = b[n:]
		h, m := binary.Uvarint(b)
		if m <= 0 {
			break
		}
		b = b[m:]
		line += int(d)
		out[line] = int64(min(h, 1<<62))
	}
	return out
}

// storeUnavailable tells a failure to reach the Object Store (a timeout,
// no responder while a NATS node is lost or a leader is elected, a closed
// connection) from a report that is not there or not readable. The first
// passes: the event is handled again (bounded retries, then the DLQ)
// instead of the test run ending in error, which would fail its gate.
func storeUnavailable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, nats.ErrDisconnected)
}
