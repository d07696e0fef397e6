// Package conduit is a client for the Conduit API of Phabricator and Phorge,
// enough to report Harbormaster build results (harbormaster.sendmessage).
//
// Requests are encoded the way Arcanist's ConduitClient sends them, which
// every Phabricator and Phorge release decodes
// (PhabricatorConduitAPIController::decodeConduitParams): a form POST to
// <base>/api/<method> with
//
//	params=<the parameters as one JSON object, with "__conduit__": {"token": "api-…"}>
//	output=json
//	__conduit__=1
//
// The answer is a JSON object {"result", "error_code", "error_info"}, HTTP 200
// even for a Conduit error, sometimes behind a "for(;;);" shield.
package conduit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// TokenTypes are the prefixes an API token starts with (PhabricatorConduitToken).
var TokenTypes = []string{"api", "cli", "clr"}

// CheckToken reports whether tok looks like a Conduit API token: 32
// characters beginning with "api-" (or "cli-", "clr-"), as the server checks
// before looking it up.
func CheckToken(tok string) error {
	if len(tok) != 32 {
		return fmt.Errorf("a Conduit API token is 32 characters long (api-…), this one has %d", len(tok))
	}
	prefix, _, _ := strings.Cut(tok, "-")
	for _, t := range TokenTypes {
		if prefix == t {
			return nil
		}
	}
	return errors.New(`a Conduit API token begins with "api-" (Settings → Conduit API Tokens)`)
}

// BaseURL normalises a Phabricator/Phorge address: "https://phab.example.com",
// with or without a trailing "/" or "/api/".
func BaseURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("conduit URL %q: want http(s)://host[/path] of the Phabricator or Phorge install", raw)
	}
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/api")
	return strings.TrimRight(u.String(), "/"), nil
}

// Client calls Conduit methods with an API token.
type Client struct {
	base, token string
	hc          *http.Client
}

// New makes a client for the install at baseURL. hc may be nil
// (http.DefaultClient); give it a timeout.
func New(baseURL, token string, hc *http.Client) (*Client, error) {
	base, err := BaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	if err := CheckToken(token); err != nil {
		return nil, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: base, token: token, hc: hc}, nil
}

// Error is an error Conduit answered (error_code and error_info): the call
// reached the server, which refused it.
type Error struct {
	Method, Code, Info string
}

func (e *Error) Error() string { return fmt.Sprintf("conduit %s: %s: %s", e.Method, e.Code, e.Info) }

// HTTPError is an answer that was not a Conduit response.
type HTTPError struct {
	Method string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("conduit %s: HTTP %d: %s", e.Method, e.Status, e.Body)
}

// IsPermanent reports whether retrying err cannot help: Conduit refused the
// call (a bad token, an unknown build target), or the server answered a 4xx
// other than 408 and 429. Network errors and 5xx are worth retrying.
func IsPermanent(err error) bool {
	var ce *Error
	var pe *ParamError
	if errors.As(err, &ce) || errors.As(err, &pe) {
		return true
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status >= 400 && he.Status < 500 && he.Status != http.StatusRequestTimeout && he.Status != http.StatusTooManyRequests
	}
	return false
}

// Encode returns the form body of a call, as Arcanist sends it.
func Encode(token string, params map[string]any) (url.Values, error) {
	p := make(map[string]any, len(params)+1)
	for k, v := range params {
		p[k] = v
	}
	p["__conduit__"] = map[string]string{"token": token}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return url.Values{"params": {string(raw)}, "output": {"json"}, "__conduit__": {"1"}}, nil
}

// Call calls method with params and returns its result.
func (c *Client) Call(ctx context.Context, method string, params map[string]any) (json.RawMessage, error) {
	form, err := Encode(c.token, params)
	if err != nil {
		return nil, fmt.Errorf("conduit %s: encoding params: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/"+method, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "shiploop")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("conduit %s: %w", method, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("conduit %s: reading the answer: %w", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{Method: method, Status: resp.StatusCode, Body: snippet(body)}
	}
	var out struct {
		Result    json.RawMessage `json:"result"`
		ErrorCode *string         `json:"error_code"`
		ErrorInfo *string         `json:"error_info"`
	}
	if err := json.Unmarshal(bytes.TrimPrefix(body, []byte("for(;;);")), &out); err != nil {
		// A proxy's error page, a login page: not Conduit. Retry later.
		return nil, fmt.Errorf("conduit %s: HTTP 200 but not a Conduit answer (%v): %s", method, err, snippet(body))
	}
	if out.ErrorCode != nil && *out.ErrorCode != "" {
		info := ""
		if out.ErrorInfo != nil {
			info = *out.ErrorInfo
		}
		return nil, &Error{Method: method, Code: *out.ErrorCode, Info: info}
	}
	return out.Result, nil
}

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
