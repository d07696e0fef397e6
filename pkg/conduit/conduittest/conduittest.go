// Package conduittest is a fake Phabricator/Phorge Conduit endpoint for
// tests. It decodes each request the way PhabricatorConduitAPIController
// does (a "params" JSON object with "__conduit__" metadata, the API
// console's params[key]=<JSON> form, or plain key-value pairs with "api.*"
// metadata keys), checks the API token as the server does (32 characters,
// api-/cli-/clr-), and checks harbormaster.sendmessage against
// HarbormasterSendMessageConduitAPIMethod and the unit/lint parameter specs.
// Every call is recorded; a call the real server would refuse is recorded
// with its error and answered with a Conduit error.
package conduittest

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Call is one request the server saw.
type Call struct {
	Method string
	// Encoding is how the parameters came: "params-json", "params-array"
	// or "plain".
	Encoding string
	Output   string
	Metadata map[string]any
	Params   map[string]any
	// Error is the Conduit error the call got, "" when it was accepted.
	Error string
	// Status is the HTTP status answered (200 for Conduit answers).
	Status int
}

// Server is the fake.
type Server struct {
	*httptest.Server
	// Token is the one API token the server accepts.
	Token string

	mu      sync.Mutex
	calls   []Call
	changed chan struct{}
	// down answers this HTTP status instead of Conduit while > 0 calls remain.
	down, downStatus int
}

// NewServer starts a fake accepting token; it is closed when the test ends.
func NewServer(t testing.TB, token string) *Server {
	s := &Server{Token: token, changed: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// FailNext makes the next n calls answer HTTP status (e.g. 503) without
// being handled, as a server that is down would.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down, s.downStatus = n, status
}

// Calls returns every call so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Wait waits until match holds for the calls so far and returns them.
func (s *Server) Wait(t testing.TB, timeout time.Duration, what string, match func([]Call) bool) []Call {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		calls, changed := slices.Clone(s.calls), s.changed
		s.mu.Unlock()
		if match(calls) {
			return calls
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("fake Conduit: %s not seen within %v; calls: %+v", what, timeout, calls)
			return nil
		}
	}
}

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	s.mu.Lock()
	down, downStatus := s.down, s.downStatus
	if down > 0 {
		s.down--
	}
	s.mu.Unlock()
	if down > 0 {
		s.record(Call{Method: method, Status: downStatus})
		http.Error(w, "fake Conduit is down", downStatus)
		return
	}
	if !ok || method == "" {
		s.record(Call{Method: r.URL.Path, Status: http.StatusNotFound})
		http.NotFound(w, r)
		return
	}
	call := Call{Method: method, Status: http.StatusOK}
	call.Error = s.handle(r, &call)
	s.record(call)
	answer := map[string]any{"result": nil, "error_code": nil, "error_info": nil}
	if call.Error != "" {
		code, info, _ := strings.Cut(call.Error, ": ")
		answer["error_code"], answer["error_info"] = code, info
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// handle decodes and checks one call; it returns "CODE: info" for a call
// the real server refuses.
func (s *Server) handle(r *http.Request, call *Call) string {
	if r.Method == http.MethodPost {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if ct != "application/x-www-form-urlencoded" && ct != "multipart/form-data" {
			// PHP fills $_POST only from these: the server would see no parameters.
			return fmt.Sprintf("ERR-INVALID-SESSION: Session key is not present. (POST body of type %q is not read by PHP)", ct)
		}
	}
	if r.Header.Get("Content-Encoding") != "" {
		return "ERR-CONDUIT-CORE: compressed request bodies are only accepted after the server announces gzip"
	}
	if err := r.ParseForm(); err != nil {
		return "ERR-CONDUIT-CORE: " + err.Error()
	}
	call.Output = r.Form.Get("output")
	meta, params, enc, err := decodeParams(r.Form)
	call.Metadata, call.Params, call.Encoding = meta, params, enc
	if err != nil {
		return "ERR-CONDUIT-CORE: " + err.Error()
	}
	tok, _ := meta["token"].(string)
	switch {
	case tok == "":
		return "ERR-INVALID-SESSION: Session key is not present."
	case len(tok) != 32:
		return fmt.Sprintf("ERR-INVALID-AUTH: API token %q has the wrong length. API tokens should be 32 characters long.", tok)
	case !slices.Contains([]string{"api", "cli", "clr"}, strings.SplitN(tok, "-", 2)[0]):
		return fmt.Sprintf("ERR-INVALID-AUTH: API token %q has the wrong format.", tok)
	case tok != s.Token:
		return fmt.Sprintf("ERR-INVALID-AUTH: API token %q is not valid.", tok)
	}
	switch call.Method {
	case "conduit.ping":
		return ""
	case "harbormaster.sendmessage":
		if err := checkSendMessage(params); err != nil {
			return "ERR-CONDUIT-CORE: " + err.Error()
		}
		return ""
	}
	return fmt.Sprintf("ERR-CONDUIT-CORE: Conduit method %q does not exist.", call.Method)
}

var consoleKey = regexp.MustCompile(`^params\[([^\]]*)\]$`)

// decodeParams follows decodeConduitParams.
func decodeParams(form url.Values) (meta, params map[string]any, enc string, err error) {
	// The API console: params[key]=<JSON value>.
	console := map[string]any{}
	for k, vs := range form {
		if m := consoleKey.FindStringSubmatch(k); m != nil {
			v := vs[len(vs)-1]
			if v == "" {
				v = "null"
			}
			var d any
			if err := json.Unmarshal([]byte(v), &d); err != nil || (d == nil && strings.ToLower(v) != "null") {
				return nil, nil, "params-array", fmt.Errorf("the value for parameter '%s' is not valid JSON", m[1])
			}
			console[m[1]] = d
		}
	}
	if len(console) > 0 {
		meta, _ = console["__conduit__"].(map[string]any)
		delete(console, "__conduit__")
		return orEmpty(meta), console, "params-array", nil
	}
	if raw := form.Get("params"); raw != "" {
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		var p map[string]any
		if err := dec.Decode(&p); err != nil || dec.More() {
			return nil, nil, "params-json", fmt.Errorf("invalid parameter information was passed: params is not a JSON object")
		}
		meta, _ = p["__conduit__"].(map[string]any)
		delete(p, "__conduit__")
		return orEmpty(meta), p, "params-json", nil
	}
	meta, params = map[string]any{}, map[string]any{}
	for k, vs := range phpForm(form) {
		switch {
		case strings.HasPrefix(k, "api."):
			meta[k[4:]] = vs
		case k == "access_token" || k == "scope" || k == "output" || k == "__conduit__":
			meta[k] = vs
		default:
			params[k] = vs
		}
	}
	return meta, params, "plain", nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// phpForm nests "a[b][c]=v" keys the way PHP fills $_REQUEST; "a[]" appends.
func phpForm(form url.Values) map[string]any {
	out := map[string]any{}
	for k, vs := range form {
		for _, v := range vs {
			base, rest, nested := strings.Cut(k, "[")
			if !nested || !strings.Contains(rest, "]") {
				out[k] = v
				continue
			}
			var path []string
			for s := "[" + rest; strings.HasPrefix(s, "["); {
				end := strings.Index(s, "]")
				if end < 0 {
					break
				}
				path = append(path, s[1:end])
				s = s[end+1:]
			}
			cur := out
			key := base
			for _, p := range path {
				next, ok := cur[key].(map[string]any)
				if !ok {
					next = map[string]any{}
					cur[key] = next
				}
				cur, key = next, p
				if key == "" {
					key = fmt.Sprint(len(cur))
				}
			}
			cur[key] = v
		}
	}
	for k, v := range out {
		out[k] = naturalLists(v)
	}
	return out
}

// naturalLists turns PHP arrays keyed 0..n-1 into lists, as json_encode
// and PhutilTypeSpec see them.
func naturalLists(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for k, e := range m {
		m[k] = naturalLists(e)
	}
	list := make([]any, len(m))
	for i := range list {
		e, ok := m[fmt.Sprint(i)]
		if !ok {
			return m
		}
		list[i] = e
	}
	return list
}

// checkSendMessage follows HarbormasterSendMessageConduitAPIMethod for a
// build target receiver.
func checkSendMessage(p map[string]any) error {
	for k := range p {
		if !slices.Contains([]string{"receiver", "buildTargetPHID", "type", "unit", "lint"}, k) {
			return fmt.Errorf("unknown parameter %q", k)
		}
	}
	receiver, _ := p["receiver"].(string)
	if target, ok := p["buildTargetPHID"]; ok && target != nil {
		if receiver != "" {
			return fmt.Errorf(`call specifies both "receiver" and "buildTargetPHID"`)
		}
		receiver, _ = target.(string)
	}
	if receiver == "" {
		return fmt.Errorf(`call omits required "receiver" parameter`)
	}
	if !strings.HasPrefix(receiver, "PHID-HMBT-") {
		return fmt.Errorf("unable to load build target %q to receive message", receiver)
	}
	typ, _ := p["type"].(string)
	if !slices.Contains([]string{"pass", "fail", "work"}, typ) {
		return fmt.Errorf("message type %q is not one a build target receives (pass, fail, work)", typ)
	}
	if err := checkList(p, "unit", map[string]string{
		"name": "string", "result": "string", "namespace": "optional string", "engine": "optional string",
		"duration": "optional float|int", "path": "optional string", "coverage": "optional map<string, wild>",
		"details": "optional string", "format": "optional string",
	}, func(m map[string]any) error {
		if r := m["result"].(string); !slices.Contains([]string{"pass", "fail", "skip", "broken", "unsound"}, r) {
			return fmt.Errorf("result %q is not an ArcanistUnitTestResult code", r)
		}
		if f, ok := m["format"].(string); ok && f != "text" && f != "remarkup" {
			return fmt.Errorf("format %q: want text or remarkup", f)
		}
		return nil
	}); err != nil {
		return err
	}
	return checkList(p, "lint", map[string]string{
		"name": "string", "code": "string", "severity": "string", "path": "string",
		"line": "optional int", "char": "optional int", "description": "optional string",
	}, func(m map[string]any) error {
		if s := m["severity"].(string); !slices.Contains([]string{"advice", "autofix", "warning", "error", "disabled"}, s) {
			return fmt.Errorf("severity %q is not an ArcanistLintSeverity", s)
		}
		return nil
	})
}

// checkList checks a list<wild> of dictionaries against a PhutilTypeSpec
// map (unknown keys are dropped, as newFromDictionary does).
func checkList(p map[string]any, name string, spec map[string]string, more func(map[string]any) error) error {
	v, ok := p[name]
	if !ok || v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return fmt.Errorf("parameter %q must be a list", name)
	}
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return fmt.Errorf("%s[%d] is not a dictionary", name, i)
		}
		for key, typ := range spec {
			val, present := m[key]
			optional := strings.HasPrefix(typ, "optional ")
			typ = strings.TrimPrefix(typ, "optional ")
			if !present || val == nil {
				if !optional {
					return fmt.Errorf("%s[%d]: required key %q is missing", name, i, key)
				}
				continue
			}
			if !typeOK(val, typ) {
				return fmt.Errorf("%s[%d].%s: expected %s, got %T %v", name, i, key, typ, val, val)
			}
		}
		if err := more(m); err != nil {
			return fmt.Errorf("%s[%d]: %w", name, i, err)
		}
	}
	return nil
}

func typeOK(v any, typ string) bool {
	switch typ {
	case "string":
		_, ok := v.(string)
		return ok
	case "int":
		n, ok := v.(json.Number)
		return ok && !strings.ContainsAny(n.String(), ".eE")
	case "float|int":
		_, ok := v.(json.Number)
		return ok
	case "map<string, wild>":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

// Units returns the unit results of a recorded sendmessage call.
func (c Call) Units() []map[string]any { return dicts(c.Params["unit"]) }

// Lints returns the lint messages of a recorded sendmessage call.
func (c Call) Lints() []map[string]any { return dicts(c.Params["lint"]) }

// Type is the message type of a sendmessage call.
func (c Call) Type() string { s, _ := c.Params["type"].(string); return s }

// Target is the build target of a sendmessage call.
func (c Call) Target() string {
	if s, _ := c.Params["buildTargetPHID"].(string); s != "" {
		return s
	}
	s, _ := c.Params["receiver"].(string)
	return s
}

func dicts(v any) []map[string]any {
	list, _ := v.([]any)
	var out []map[string]any
	for _, item := range list {
		if m, ok := item.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
