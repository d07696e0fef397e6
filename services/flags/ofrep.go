package flags

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/shiploop/shiploop/services/flags/eval"
	"io"
	"net/http"
	"strings"
)

// OFREP error codes.
const (
	errFlagNotFound   = "FLAG_NOT_FOUND"
	errParse          = "PARSE_ERROR"
	errInvalidContext = "INVALID_CONTEXT"
	errGeneral        = "GENERAL"
)

type ofrepError struct {
	Key          string `json:"key,omitempty"`
	ErrorCode    string `json:"errorCode"`
	ErrorDetails string `json:"errorDetails"`
}

// Routes registers the OFREP endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	wrap := s.cfg.ReadAuth
	if wrap == nil {
		wrap = func(h http.Handler) http.Handler { return h }
	}
	mux.Handle("POST /ofrep/v1/evaluate/flags/{key}", wrap(http.HandlerFunc(s.evaluateOne)))
	mux.Handle("POST /ofrep/v1/evaluate/flags", wrap(http.HandlerFunc(s.evaluateAll)))
}

// readContext reads {"context": {...}} and the environment it names.
func readContext(r *http.Request) (map[string]any, string, *ofrepError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, "", &ofrepError{ErrorCode: errParse, ErrorDetails: "reading body: " + err.Error()}
	}
	var req struct {
		Context map[string]any `json:"context"`
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, "", &ofrepError{ErrorCode: errParse, ErrorDetails: "body: " + err.Error()}
		}
	}
	env, _ := req.Context["environment"].(string)
	if env == "" {
		return nil, "", &ofrepError{ErrorCode: errInvalidContext, ErrorDetails: "context.environment is required: flags are defined per environment (e.g. \"production\")"}
	}
	return req.Context, env, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Service) evaluateOne(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	ctx, env, oe := readContext(r)
	if oe != nil {
		oe.Key = key
		writeJSON(w, http.StatusBadRequest, oe)
		return
	}
	f, err := s.Get(r.Context(), key, env)
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, ofrepError{Key: key, ErrorCode: errFlagNotFound, ErrorDetails: "no flag " + key + " in environment " + env})
		return
	}
	if err != nil {
		s.log.Error("ofrep evaluate", "key", key, "err", err)
		writeJSON(w, http.StatusInternalServerError, ofrepError{Key: key, ErrorCode: errGeneral, ErrorDetails: "could not read the flag"})
		return
	}
	writeJSON(w, http.StatusOK, eval.Evaluate(f, ctx))
}

func (s *Service) evaluateAll(w http.ResponseWriter, r *http.Request) {
	ctx, env, oe := readContext(r)
	if oe != nil {
		writeJSON(w, http.StatusBadRequest, oe)
		return
	}
	fs, err := s.List(r.Context(), env)
	if err != nil {
		s.log.Error("ofrep bulk evaluate", "err", err)
		writeJSON(w, http.StatusInternalServerError, ofrepError{ErrorCode: errGeneral, ErrorDetails: "could not read the flags"})
		return
	}
	out := struct {
		Flags []eval.Result `json:"flags"`
	}{Flags: []eval.Result{}}
	for _, f := range fs {
		out.Flags = append(out.Flags, eval.Evaluate(f, ctx))
	}
	body, _ := json.Marshal(out)
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	if match := r.Header.Get("If-None-Match"); match != "" && (match == etag || match == "*") {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}
