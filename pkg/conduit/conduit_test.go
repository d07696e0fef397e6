package conduit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/conduit"
	"github.com/shiploop/shiploop/pkg/conduit/conduittest"
)

const token = "api-abcdefghijklmnopqrstuvwxyz12"

func TestSendMessageAsPhabricatorParsesIt(t *testing.T) {
	srv := conduittest.NewServer(t, token)
	c, err := conduit.New(srv.URL+"/api/", token, &http.Client{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = c.SendMessage(context.Background(), conduit.Message{
		BuildTargetPHID: "PHID-HMBT-abc123", Type: conduit.Fail,
		Unit: []conduit.Unit{{Name: "test", Result: conduit.UnitFail, Engine: "shiploop", Duration: 1.5, Details: "exit code 1"}, {Name: "lint", Result: conduit.UnitPass}},
		Lint: []conduit.Lint{{Name: "unused", Code: "U1000", Severity: conduit.SeverityWarning, Path: "main.go", Line: 17, Char: 3}},
	})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	calls := srv.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls = %+v", calls)
	}
	c0 := calls[0]
	if c0.Method != "harbormaster.sendmessage" || c0.Encoding != "params-json" || c0.Output != "json" || c0.Error != "" {
		t.Errorf("call = %+v", c0)
	}
	if c0.Metadata["token"] != token || c0.Target() != "PHID-HMBT-abc123" || c0.Type() != "fail" {
		t.Errorf("metadata %v target %q type %q", c0.Metadata, c0.Target(), c0.Type())
	}
	if u := c0.Units(); len(u) != 2 || u[0]["name"] != "test" || u[0]["result"] != "fail" || u[0]["duration"].(interface{ String() string }).String() != "1.5" {
		t.Errorf("units = %v", u)
	}
	if l := c0.Lints(); len(l) != 1 || l[0]["severity"] != "warning" || l[0]["path"] != "main.go" {
		t.Errorf("lint = %v", l)
	}
}

func TestErrors(t *testing.T) {
	srv := conduittest.NewServer(t, token)
	ctx := context.Background()
	other := "api-zzzzzzzzzzzzzzzzzzzzzzzzzzzz"
	c, _ := conduit.New(srv.URL, other, nil)
	err := c.SendMessage(ctx, conduit.Message{BuildTargetPHID: "PHID-HMBT-1", Type: conduit.Pass})
	var ce *conduit.Error
	if !errors.As(err, &ce) || ce.Code != "ERR-INVALID-AUTH" || !conduit.IsPermanent(err) {
		t.Errorf("wrong token: %v", err)
	}
	srv.FailNext(1, http.StatusServiceUnavailable)
	c, _ = conduit.New(srv.URL, token, nil)
	err = c.SendMessage(ctx, conduit.Message{BuildTargetPHID: "PHID-HMBT-1", Type: conduit.Pass})
	var he *conduit.HTTPError
	if !errors.As(err, &he) || he.Status != 503 || conduit.IsPermanent(err) {
		t.Errorf("503: %v", err)
	}
	if err := c.SendMessage(ctx, conduit.Message{BuildTargetPHID: "PHID-HMBT-1", Type: "done"}); !conduit.IsPermanent(err) {
		t.Errorf("bad type: %v", err)
	}
	srv.Close()
	if err := c.SendMessage(ctx, conduit.Message{BuildTargetPHID: "PHID-HMBT-1", Type: conduit.Pass}); err == nil || conduit.IsPermanent(err) {
		t.Errorf("server gone: %v (want a retryable error)", err)
	}
	for _, tok := range []string{"", "api-short", "xyz-abcdefghijklmnopqrstuvwxyz12"} {
		if _, err := conduit.New("https://phab.example.com", tok, nil); err == nil {
			t.Errorf("token %q accepted", tok)
		}
	}
	if _, err := conduit.New("phab.example.com", token, nil); err == nil {
		t.Error("URL without scheme accepted")
	}
}

// TestFakeDecodesEveryForm checks the fake against the other encodings
// Phabricator accepts: plain key-value pairs with api.token, and the API
// console's params[key]=<JSON>.
func TestFakeDecodesEveryForm(t *testing.T) {
	srv := conduittest.NewServer(t, token)
	post := func(form url.Values) {
		resp, err := http.Post(srv.URL+"/api/harbormaster.sendmessage", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post(url.Values{"api.token": {token}, "buildTargetPHID": {"PHID-HMBT-1"}, "type": {"pass"}, "unit[0][name]": {"a"}, "unit[0][result]": {"pass"}})
	post(url.Values{"params[__conduit__]": {`{"token":"` + token + `"}`}, "params[receiver]": {`"PHID-HMBT-2"`}, "params[type]": {`"work"`}})
	post(url.Values{"params": {`{"buildTargetPHID":"PHID-HMBT-3","receiver":"PHID-HMBT-3","type":"pass","__conduit__":{"token":"` + token + `"}}`}})
	post(url.Values{"params": {`{"buildTargetPHID":"PHID-HMBT-4","type":"pass","unit":[{"name":"x","result":"ok"}],"__conduit__":{"token":"` + token + `"}}`}})
	calls := srv.Calls()
	want := []struct{ enc, err string }{
		{"plain", ""}, {"params-array", ""},
		{"params-json", `both "receiver" and "buildTargetPHID"`},
		{"params-json", `result "ok"`},
	}
	for i, w := range want {
		if calls[i].Encoding != w.enc || (w.err == "") != (calls[i].Error == "") || !strings.Contains(calls[i].Error, w.err) {
			t.Errorf("call %d: %+v, want encoding %s error %q", i, calls[i], w.enc, w.err)
		}
	}
	if u := calls[0].Units(); len(u) != 1 || u[0]["name"] != "a" {
		t.Errorf("plain form units = %v", u)
	}
}

func FuzzFakeRequest(f *testing.F) {
	f.Add("params=%7B%7D&output=json")
	f.Add("api.token=x&unit[0][name]=a&unit[]=b&params[a]=")
	f.Add("params[x]=%7B&a[b][c][]=1")
	srv := conduittest.NewServer(f, token)
	// The server's handler is called in-process: the same parsing as over
	// loopback, without a connection per input.
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/api/harbormaster.sendmessage", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		srv.Config.Handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
