package testruns

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
)

// TestReportDownloads: the JUnit and coverage reports a test job uploaded,
// and one sent with UploadReport, can be listed (GET /builds/ID/reports/)
// and downloaded as stored (GET /builds/ID/reports/NAME) with a read token,
// not without one; an unknown name or build is 404.
func TestReportDownloads(t *testing.T) {
	storetest.Engines(t, "testruns", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		h.svc.cfg.Auth = &server.Auth{AdminToken: "s3cret-admin"}
		mux := http.NewServeMux()
		h.svc.Routes(mux)
		web := httptest.NewServer(mux)
		defer web.Close()
		get := func(path, token string) (int, string) {
			t.Helper()
			req, _ := http.NewRequest(http.MethodGet, web.URL+path, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}

		plan := &eventsv1.TestPlan{
			Steps:   []*eventsv1.Step{{Name: "test", Commands: []string{"pytest"}}},
			Reports: &eventsv1.TestReportGlobs{Junit: []string{"junit.xml"}, Coverage: []string{"coverage.xml"}},
		}
		h.build("rb1", "acme/py", "c1", plan, true)
		jobs := h.takeJobs(1)
		report := junit(pass("test_ok"), fail("test_bad"))
		coverage := `<?xml version="1.0" ?><coverage line-rate="0.5" lines-valid="2" lines-covered="1" version="7.4"><packages><package name="app"><classes>` +
			`<class name="m.py" filename="app/m.py" line-rate="0.5"><lines><line number="1" hits="1"/><line number="2" hits="0"/></lines></class></classes></package></packages></coverage>`
		h.finishJob(jobs[0], eventsv1.BuildStatus_BUILD_STATUS_FAILURE, map[string]string{"junit.xml": report, "coverage.xml": coverage})
		h.finished(runID(t, h, "rb1"))
		if _, err := h.api.UploadReport(t.Context(), &testrunsv1.UploadReportRequest{BuildId: "rb1", Name: "extra.xml", Content: []byte(junit(pass("test_more")))}); err != nil {
			t.Fatal(err)
		}

		if code, _ := get("/builds/rb1/reports/coverage.xml", ""); code != http.StatusUnauthorized {
			t.Errorf("without a token: %d, want 401", code)
		}
		code, body := get("/builds/rb1/reports/", "s3cret-admin")
		var index struct {
			BuildID string       `json:"build_id"`
			Reports []ReportFile `json:"reports"`
		}
		if err := json.Unmarshal([]byte(body), &index); code != http.StatusOK || err != nil {
			t.Fatalf("index: %d %v %s", code, err, body)
		}
		urls := map[string]string{}
		for _, r := range index.Reports {
			urls[r.Name] = r.URL
		}
		if len(index.Reports) != 3 || urls["junit.xml"] != "/builds/rb1/reports/junit.xml?job="+jobs[0].JobId || urls["extra.xml"] != "/builds/rb1/reports/extra.xml" {
			t.Errorf("index = %s", body)
		}
		for name, want := range map[string]string{"coverage.xml": coverage, "junit.xml": report, "extra.xml": junit(pass("test_more"))} {
			if code, got := get("/builds/rb1/reports/"+name, "s3cret-admin"); code != http.StatusOK || got != want {
				t.Errorf("GET %s: %d %q, want 200 and the stored file", name, code, got)
			}
		}
		if code, got := get(urls["junit.xml"], "s3cret-admin"); code != http.StatusOK || got != report {
			t.Errorf("GET %s: %d", urls["junit.xml"], code)
		}
		for _, p := range []string{"/builds/rb1/reports/nope.xml", "/builds/rb1/reports/junit.xml?job=other", "/builds/nobuild/reports/", "/builds/nobuild/reports/junit.xml"} {
			if code, body := get(p, "s3cret-admin"); code != http.StatusNotFound || !strings.Contains(body, "no test report") {
				t.Errorf("GET %s: %d %q, want 404", p, code, body)
			}
		}
	})
}
