package dashboards

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// The build page: /builds/{id}, the link commit statuses carry. The stage
// graph (jobs and their steps, tests, gate, deploys), each job's log split
// by step into <details> with ANSI colours, line anchors (#L<job>-<n>), a
// server-side search (?q=), the raw log download, and the build's
// artifacts and test reports.

// maxLogLines caps the lines a job shows on the page (the newest); the raw
// download has them all.
const maxLogLines = 5000

type buildPage struct {
	Repository, Branch, Event, Ref, Commit, Message, Author, ChainID string
	Build                                                            buildView
	TestRuns                                                         []testRunView
	Gate                                                             *gateView
	Deploys                                                          []deployView
	Logs                                                             []jobLog
	Files                                                            []fileView
	Reports                                                          []fileView
	// Q is the search; Matches the lines it found.
	Q       string
	Matches int
}

// jobLog is one job's log as the page shows it.
type jobLog struct {
	Job      jobView
	Title    string
	Steps    []stepLog
	Total    int
	Omitted  int
	Live     bool
	LiveURL  string
	RawURL   string
	Anchor   string
	Finished bool
}

// stepLog is one step's section of a job's log.
type stepLog struct {
	ID, Name, Status string
	Lines            []logLineHTML
	Total, Matches   int
	Open             bool
}

type logLineHTML struct {
	Number uint64
	Anchor string
	Stderr bool
	HTML   template.HTML
}

type fileView struct {
	Name, JobID, Detail, URL string
	Size                     int64
}

func (s *Service) buildPage(ctx context.Context, id string) (*buildPage, error) {
	bp := &buildPage{}
	b := &bp.Build
	err := s.db.QueryRowContext(ctx, `SELECT b.id, b.chain_id, b.repository, b.number, b.status, b.version, b.failed_step, b.error, b.duration_ms, b.ref, b.branch, b.event,
		b.commit_sha, COALESCE(c.message, ''), COALESCE(c.author, '')
		FROM dash_builds b LEFT JOIN dash_changes c ON c.chain_id = b.chain_id WHERE b.id = $1`, id).
		Scan(&b.ID, &bp.ChainID, &bp.Repository, &b.Number, &b.Status, &b.Version, &b.FailedStep, &b.Error, &b.DurationMS, &bp.Ref, &bp.Branch, &bp.Event,
			&bp.Commit, &bp.Message, &bp.Author)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("build %q (it may not have reached the dashboards yet): %w", id, errNotFound)
	}
	if err != nil {
		return nil, err
	}
	if b.Jobs, err = s.jobs(ctx, b.ID); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT run_id, status, tests, passed, failed, skipped, covered, coverable, error FROM dash_testruns WHERE build_id = $1 ORDER BY at`, b.ID)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		t := testRunView{BuildID: b.ID}
		if err := rows.Scan(&t.ID, &t.Status, &t.Tests, &t.Passed, &t.Failed, &t.Skipped, &t.Covered, &t.Coverable, &t.Error); err != nil {
			rows.Close()
			return nil, err
		}
		bp.TestRuns = append(bp.TestRuns, t)
	}
	rows.Close()
	var g gateView
	err = s.db.QueryRowContext(ctx, `SELECT status, summary FROM dash_gates WHERE build_id = $1`, b.ID).Scan(&g.Status, &g.Summary)
	if err == nil {
		bp.Gate = &g
	} else if !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if bp.Deploys, err = s.deploys(ctx, `WHERE build_id = $1 ORDER BY started_at, finished_at`, b.ID); err != nil {
		return nil, err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT job_id, kind, name, size, detail FROM dash_files WHERE build_id = $1 ORDER BY kind, name, job_id`, b.ID)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var f fileView
		var kind string
		if err := rows.Scan(&f.JobID, &kind, &f.Name, &f.Size, &f.Detail); err != nil {
			rows.Close()
			return nil, err
		}
		what := "artifacts"
		if kind == "report" {
			what = "reports"
		}
		f.URL = "/builds/" + url.PathEscape(b.ID) + "/" + what + "/" + escapeSegments(f.Name) + "?job=" + url.QueryEscape(f.JobID)
		if kind == "report" {
			bp.Reports = append(bp.Reports, f)
		} else {
			bp.Files = append(bp.Files, f)
		}
	}
	rows.Close()
	return bp, rows.Err()
}

func escapeSegments(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// splitLog turns a job's stored lines into its step sections, in the
// order of the job's steps (lines of a step the job does not list, such as
// the agent's own "setup", where they first appear). With q, only the
// lines holding it (case-insensitive, colours ignored) are kept.
func splitLog(job jobView, lines []*eventsv1.LogLine, q string) (jl jobLog, matches int) {
	jl = jobLog{Job: job, Anchor: "job-" + job.ID}
	byStep := map[string]*stepLog{}
	var order []string
	status := map[string]string{}
	for _, st := range job.Steps {
		status[st.Name] = st.Status
		order = append(order, st.Name)
	}
	section := func(name string) *stepLog {
		sl := byStep[name]
		if sl == nil {
			sl = &stepLog{Name: name, Status: status[name]}
			byStep[name] = sl
			if _, listed := status[name]; !listed {
				order = append(order, name)
			}
		}
		return sl
	}
	for _, st := range job.Steps {
		section(st.Name)
	}
	if len(lines) > maxLogLines {
		jl.Omitted = len(lines) - maxLogLines
		lines = lines[len(lines)-maxLogLines:]
	}
	lq := strings.ToLower(q)
	for _, l := range lines {
		if l.GetStream() == "end" {
			jl.Finished = true
			continue
		}
		jl.Total++
		sl := section(l.GetStep())
		sl.Total++
		if q != "" && !strings.Contains(strings.ToLower(ansiStrip(l.GetText())), lq) {
			continue
		}
		if q != "" {
			sl.Matches++
			matches++
		}
		n := l.GetNumber()
		sl.Lines = append(sl.Lines, logLineHTML{Number: n, Anchor: "L" + job.ID + "-" + strconv.FormatUint(n, 10), Stderr: l.GetStream() == "stderr",
			HTML: ansiHTML(l.GetText(), q)})
	}
	for i, name := range order {
		sl := byStep[name]
		if sl.Name == "" {
			sl.Name = "(job)"
		}
		sl.ID = "S" + job.ID + "-" + strconv.Itoa(i)
		// Open what needs reading: a failed step, the search's hits, a
		// short log.
		sl.Open = sl.Status == "failure" || sl.Status == "error" || (q != "" && sl.Matches > 0) || (q == "" && jl.Total <= 40 && sl.Total > 0)
		if q != "" && sl.Matches == 0 {
			continue
		}
		jl.Steps = append(jl.Steps, *sl)
	}
	return jl, matches
}

func (p *pages) build(w http.ResponseWriter, r *http.Request) {
	bp, err := p.s.buildPage(r.Context(), r.PathValue("id"))
	if err != nil {
		p.fail(w, err)
		return
	}
	bp.Q = strings.TrimSpace(r.URL.Query().Get("q"))
	if len(bp.Q) > 200 {
		bp.Q = bp.Q[:200]
	}
	for _, job := range bp.Build.Jobs {
		lines := p.s.storedLog(r.Context(), job.ID)
		jl, n := splitLog(job, lines, bp.Q)
		bp.Matches += n
		jl.Title = job.Kind + " job"
		for k, v := range job.Matrix {
			jl.Title += " " + k + "=" + v
		}
		jl.RawURL = "/builds/" + url.PathEscape(bp.Build.ID) + "/jobs/" + url.PathEscape(job.ID) + "/log.txt"
		if job.Live && !jl.Finished {
			jl.Live = true
			var last uint64
			if len(lines) > 0 {
				last = lines[len(lines)-1].GetNumber()
			}
			jl.LiveURL = "/changes/" + url.PathEscape(bp.ChainID) + "/jobs/" + url.PathEscape(job.ID) + "/log?after=" + strconv.FormatUint(last, 10)
		}
		bp.Logs = append(bp.Logs, jl)
	}
	p.render(w, "build", pageData{Title: fmt.Sprintf("%s #%d", bp.Repository, bp.Build.Number), Nav: "repos", Data: bp})
}

// rawLog serves a job's whole log as text, as the job wrote it (colour
// escapes included), for download.
func (p *pages) rawLog(w http.ResponseWriter, r *http.Request) {
	id, job := r.PathValue("id"), r.PathValue("job")
	var n int
	if err := p.s.db.QueryRowContext(r.Context(), `SELECT COUNT(*) FROM dash_jobs WHERE id = $1 AND build_id = $2`, job, id).Scan(&n); err != nil {
		p.fail(w, err)
		return
	}
	if n == 0 {
		http.Error(w, fmt.Sprintf("build %q has no job %q", id, job), http.StatusNotFound)
		return
	}
	lines := p.s.storedLog(r.Context(), job)
	var b strings.Builder
	step := "\x00"
	for _, l := range lines {
		if l.GetStream() == "end" {
			continue
		}
		if l.GetStep() != step {
			step = l.GetStep()
			if step != "" {
				fmt.Fprintf(&b, "##[step] %s\n", step)
			}
		}
		b.WriteString(strings.TrimRight(l.GetText(), "\n"))
		b.WriteByte('\n')
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "build-" + id + "-job-" + job + ".log"}))
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(b.String()))
}
