package errortrack

import (
	"bytes"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// readDetail reads an event's JSON, as the SDK sent it, into what Sentry's
// issue page shows. It is lenient as Relay is: a field of an unexpected
// shape is left out, never an error.
func readDetail(data string) *errortrackv1.EventDetail {
	var w struct {
		Exception   json.RawMessage `json:"exception"`
		Stacktrace  *detailStack    `json:"stacktrace"`
		Threads     json.RawMessage `json:"threads"`
		Tags        json.RawMessage `json:"tags"`
		User        json.RawMessage `json:"user"`
		Breadcrumbs json.RawMessage `json:"breadcrumbs"`
		Request     json.RawMessage `json:"request"`
		Culprit     string          `json:"culprit"`
		Transaction string          `json:"transaction"`
		ServerName  string          `json:"server_name"`
		Dist        json.RawMessage `json:"dist"`
		Release     json.RawMessage `json:"release"`
		Environment string          `json:"environment"`
		Level       string          `json:"level"`
		Start       json.RawMessage `json:"start_timestamp"`
		Timestamp   json.RawMessage `json:"timestamp"`
		SDK         struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"sdk"`
	}
	d := &errortrackv1.EventDetail{}
	if json.Unmarshal([]byte(data), &w) != nil {
		return d
	}
	var ctxs struct {
		Contexts map[string]json.RawMessage `json:"contexts"`
	}
	_ = json.Unmarshal([]byte(data), &ctxs)
	d.Culprit, d.Transaction, d.ServerName, d.Dist = w.Culprit, w.Transaction, w.ServerName, scalar(w.Dist)
	if w.SDK.Name != "" {
		d.Sdk = strings.TrimSpace(w.SDK.Name + " " + w.SDK.Version)
	}
	for _, ex := range values[detailException](w.Exception) {
		v := &errortrackv1.ExceptionValue{Type: ex.Type, Value: scalar(ex.Value), Module: ex.Module}
		if ex.Mechanism != nil {
			v.Mechanism = ex.Mechanism.Type
			if ex.Mechanism.Handled != nil {
				v.Handled, v.Unhandled = *ex.Mechanism.Handled, !*ex.Mechanism.Handled
			}
		}
		if ex.Stacktrace != nil {
			v.Frames = ex.Stacktrace.frames()
		}
		d.Exceptions = append(d.Exceptions, v)
	}
	switch {
	case w.Stacktrace != nil:
		d.Frames = w.Stacktrace.frames()
	case len(d.Exceptions) == 0:
		for _, th := range values[struct {
			Stacktrace *detailStack `json:"stacktrace"`
			Crashed    bool         `json:"crashed"`
		}](w.Threads) {
			if th.Stacktrace != nil && (th.Crashed || d.Frames == nil) {
				d.Frames = th.Stacktrace.frames()
			}
		}
	}
	tags := map[string]string{}
	for k, v := range kvPairs(w.Tags) {
		tags[k] = v
	}
	if r := scalar(w.Release); r != "" {
		tags["release"] = r
	}
	if w.Environment != "" {
		tags["environment"] = w.Environment
	}
	if w.Level != "" {
		tags["level"] = w.Level
	}
	if w.ServerName != "" {
		tags["server_name"] = w.ServerName
	}
	d.Tags = sortedKV(tags)
	var user map[string]json.RawMessage
	if json.Unmarshal(w.User, &user) == nil && len(user) > 0 {
		u := &errortrackv1.EventUser{Id: scalar(user["id"]), Email: scalar(user["email"]), Username: scalar(user["username"]), IpAddress: scalar(user["ip_address"])}
		extra := map[string]string{}
		for k, v := range user {
			switch k {
			case "id", "email", "username", "ip_address":
			default:
				extra[k] = text(v)
			}
		}
		u.Data = sortedKV(extra)
		d.User = u
	}
	for _, b := range values[struct {
		Timestamp json.RawMessage            `json:"timestamp"`
		Type      string                     `json:"type"`
		Category  string                     `json:"category"`
		Level     string                     `json:"level"`
		Message   json.RawMessage            `json:"message"`
		Data      map[string]json.RawMessage `json:"data"`
	}](w.Breadcrumbs) {
		bc := &errortrackv1.Breadcrumb{Type: b.Type, Category: b.Category, Level: b.Level, Message: scalar(b.Message)}
		if t := detailTime(b.Timestamp); !t.IsZero() {
			bc.Timestamp = timestamppb.New(t)
		}
		data := map[string]string{}
		for k, v := range b.Data {
			data[k] = text(v)
		}
		bc.Data = sortedKV(data)
		d.Breadcrumbs = append(d.Breadcrumbs, bc)
	}
	var req struct {
		Method      string          `json:"method"`
		URL         string          `json:"url"`
		QueryString json.RawMessage `json:"query_string"`
		Headers     json.RawMessage `json:"headers"`
	}
	if json.Unmarshal(w.Request, &req) == nil && (req.Method != "" || req.URL != "") {
		r := &errortrackv1.EventRequest{Method: req.Method, Url: req.URL, QueryString: scalar(req.QueryString)}
		if r.QueryString == "" {
			// Some SDKs send the query as pairs.
			var qs []string
			for k, v := range kvPairs(req.QueryString) {
				qs = append(qs, k+"="+v)
			}
			sort.Strings(qs)
			r.QueryString = strings.Join(qs, "&")
		}
		hs := map[string]string{}
		for k, v := range kvPairs(req.Headers) {
			if secretHeader(k) {
				continue
			}
			hs[k] = v
		}
		r.Headers = sortedKV(hs)
		d.Request = r
	}
	flat := map[string]string{}
	for name, raw := range ctxs.Contexts {
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil {
			continue
		}
		for k, v := range fields {
			if k == "type" {
				continue
			}
			if s := text(v); s != "" && len(s) <= 512 {
				flat[name+"."+k] = s
			}
		}
	}
	d.Contexts = sortedKV(flat)
	if start, end := detailTime(w.Start), detailTime(w.Timestamp); !start.IsZero() && !end.IsZero() && !end.Before(start) {
		d.DurationMs = float64(end.Sub(start).Microseconds()) / 1000
	}
	return d
}

// secretHeader: headers an issue page never shows (credentials).
func secretHeader(k string) bool {
	switch strings.ToLower(k) {
	case "cookie", "set-cookie", "authorization", "proxy-authorization", "x-api-key", "x-auth-token", "x-sentry-auth":
		return true
	}
	return false
}

type detailException struct {
	Type       string          `json:"type"`
	Value      json.RawMessage `json:"value"`
	Module     string          `json:"module"`
	Stacktrace *detailStack    `json:"stacktrace"`
	Mechanism  *struct {
		Type    string `json:"type"`
		Handled *bool  `json:"handled"`
	} `json:"mechanism"`
}

type detailStack struct {
	Frames []struct {
		Filename    string          `json:"filename"`
		AbsPath     string          `json:"abs_path"`
		Function    string          `json:"function"`
		Module      string          `json:"module"`
		Package     string          `json:"package"`
		Lineno      json.RawMessage `json:"lineno"`
		Colno       json.RawMessage `json:"colno"`
		InApp       *bool           `json:"in_app"`
		PreContext  []any           `json:"pre_context"`
		ContextLine json.RawMessage `json:"context_line"`
		PostContext []any           `json:"post_context"`
	} `json:"frames"`
}

func (st *detailStack) frames() []*errortrackv1.StackFrame {
	out := make([]*errortrackv1.StackFrame, 0, len(st.Frames))
	for _, f := range st.Frames {
		out = append(out, &errortrackv1.StackFrame{Filename: f.Filename, AbsPath: f.AbsPath, Function: f.Function, Module: f.Module, Package: f.Package,
			Lineno: int32(number(f.Lineno)), Colno: int32(number(f.Colno)), InApp: f.InApp != nil && *f.InApp,
			PreContext: lines(f.PreContext), ContextLine: scalar(f.ContextLine), PostContext: lines(f.PostContext)})
	}
	return out
}

func lines(l []any) []string {
	out := make([]string, 0, len(l))
	for _, v := range l {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

func number(raw json.RawMessage) int64 {
	s := strings.Trim(string(bytes.TrimSpace(raw)), `"`)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > math.MaxInt32 {
		return 0
	}
	return int64(f)
}

// values reads Sentry's {"values": [...]} or a bare list.
func values[T any](raw json.RawMessage) []T {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var list []T
	if raw[0] == '[' {
		_ = json.Unmarshal(raw, &list)
		return list
	}
	var obj struct {
		Values []T `json:"values"`
	}
	_ = json.Unmarshal(raw, &obj)
	return obj.Values
}

// kvPairs reads an object or a list of [key, value] pairs.
func kvPairs(raw json.RawMessage) map[string]string {
	out := map[string]string{}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return out
	}
	if raw[0] == '{' {
		var m map[string]json.RawMessage
		_ = json.Unmarshal(raw, &m)
		for k, v := range m {
			out[k] = text(v)
		}
		return out
	}
	var l [][]json.RawMessage
	_ = json.Unmarshal(raw, &l)
	for _, p := range l {
		if len(p) == 2 {
			if k := scalar(p[0]); k != "" {
				out[k] = text(p[1])
			}
		}
	}
	return out
}

// scalar is a string, number or bool as text ("" for objects and lists).
func scalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" || raw[0] == '{' || raw[0] == '[' {
		return ""
	}
	if raw[0] == '"' {
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	}
	return string(raw)
}

// text is a scalar as text, anything else as compact JSON.
func text(raw json.RawMessage) string {
	if s := scalar(raw); s != "" {
		return s
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return ""
	}
	return b.String()
}

func detailTime(raw json.RawMessage) time.Time {
	s := strings.Trim(string(bytes.TrimSpace(raw)), `"`)
	if s == "" || s == "null" {
		return time.Time{}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 && f < 1e11 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC()
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

func sortedKV(m map[string]string) []*errortrackv1.KeyValue {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*errortrackv1.KeyValue, 0, len(keys))
	for _, k := range keys {
		out = append(out, &errortrackv1.KeyValue{Key: k, Value: m[k]})
	}
	return out
}
