package testruns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/server"
)

// Routes registers the report downloads, behind the same read scope as
// build artifacts (Config.Auth; without it no route is registered):
//
//	GET /builds/{id}/reports/             JSON index of the build's reports
//	GET /builds/{id}/reports/{name...}    one report file as it was stored
//
// A name several test jobs used (a matrix's junit.xml) is the newest one
// unless ?job=JOB picks another; the index gives each report's own URL.
func (s *Service) Routes(mux *http.ServeMux) {
	if s.cfg.Auth == nil {
		return
	}
	mux.Handle("GET /builds/{id}/reports/{name...}", s.cfg.Auth.Web(server.ScopeRead, http.HandlerFunc(s.serveReport)))
}

// ReportFile is one entry of the report index.
type ReportFile struct {
	Name   string    `json:"name"`
	RunID  string    `json:"run_id"`
	JobID  string    `json:"job_id,omitempty"`
	Format string    `json:"format"`
	Cases  int64     `json:"cases"`
	Error  string    `json:"error,omitempty"`
	Stored time.Time `json:"stored_at"`
	// URL downloads the file; empty for a report stored before files were
	// kept for download.
	URL string `json:"url,omitempty"`
	key string
}

// buildReports is every report of a build's test runs, newest first.
func (s *Service) buildReports(r *http.Request, buildID string) ([]ReportFile, error) {
	rows, err := s.db.QueryContext(r.Context(), `SELECT tr.name, tr.run_id, tr.job_id, tr.format, tr.cases, tr.error, tr.created_at, tr.object_key
		FROM test_reports tr JOIN test_runs r ON r.id = tr.run_id WHERE r.build_id = $1 ORDER BY tr.created_at DESC, tr.id DESC`, buildID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ReportFile
	for rows.Next() {
		var f ReportFile
		var at int64
		if err := rows.Scan(&f.Name, &f.RunID, &f.JobID, &f.Format, &f.Cases, &f.Error, &at, &f.key); err != nil {
			return nil, err
		}
		f.Stored = time.Unix(0, at).UTC()
		if f.key != "" {
			segs := strings.Split(f.Name, "/")
			for i, sg := range segs {
				segs[i] = url.PathEscape(sg)
			}
			f.URL = "/builds/" + url.PathEscape(buildID) + "/reports/" + strings.Join(segs, "/")
			if f.JobID != "" {
				f.URL += "?job=" + url.QueryEscape(f.JobID)
			}
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

func (s *Service) serveReport(w http.ResponseWriter, r *http.Request) {
	id, name, job := r.PathValue("id"), r.PathValue("name"), r.URL.Query().Get("job")
	files, err := s.buildReports(r, id)
	if err != nil {
		http.Error(w, "storage unavailable, retry later", http.StatusServiceUnavailable)
		return
	}
	if name == "" {
		if len(files) == 0 {
			http.Error(w, fmt.Sprintf("build %s has no test reports", id), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			BuildID string       `json:"build_id"`
			Reports []ReportFile `json:"reports"`
		}{id, files})
		return
	}
	var found *ReportFile
	for i := range files {
		if files[i].Name == name && (job == "" || files[i].JobID == job) {
			found = &files[i]
			break
		}
	}
	if found == nil {
		http.Error(w, fmt.Sprintf("build %s has no test report %q", id, name), http.StatusNotFound)
		return
	}
	if found.key == "" {
		http.Error(w, fmt.Sprintf("report %q of build %s was stored before report files were kept for download", name, id), http.StatusNotFound)
		return
	}
	obs, err := s.reportStore(r.Context())
	if err != nil {
		http.Error(w, "report store unavailable, retry later", http.StatusServiceUnavailable)
		return
	}
	obj, err := obs.Get(r.Context(), found.key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		http.Error(w, fmt.Sprintf("the file of report %q of build %s is gone from the store", name, id), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "report store unavailable, retry later", http.StatusServiceUnavailable)
		return
	}
	defer obj.Close()
	ct := mime.TypeByExtension(path.Ext(found.Name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	if info, err := obj.Info(); err == nil {
		w.Header().Set("Content-Length", strconv.FormatUint(info.Size, 10))
	}
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(found.Name)}))
	_, _ = io.Copy(w, obj)
}
