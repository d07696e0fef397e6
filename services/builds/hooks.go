package builds

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/forge"
)

var forges = map[string]bool{forge.GitHub: true, forge.GitLab: true, forge.Gitea: true, forge.Forgejo: true, forge.Bitbucket: true, forge.Generic: true}

// Routes registers the webhook endpoints (POST /hooks/{forge}, checked by
// each repository's secret) and artifact downloads (GET
// /builds/{id}/artifacts/{name...}, read scope when tokens are on).
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /hooks/{forge}", s.serveHook)
	// Harbormaster's "Make HTTP Request" step: GET or POST (harbormaster.go).
	mux.HandleFunc("GET /hooks/harbormaster", s.serveHarbormaster)
	mux.HandleFunc("POST /hooks/harbormaster", s.serveHarbormaster)
	mux.Handle("GET /builds/{id}/artifacts/{name...}", s.cfg.Auth.Web(server.ScopeRead, http.HandlerFunc(s.serveArtifact)))
}

// changeType is the short event type of each kind of change.
func changeType(k eventsv1.ChangeKind) string {
	switch k {
	case eventsv1.ChangeKind_CHANGE_KIND_PUSH:
		return "change.pushed"
	case eventsv1.ChangeKind_CHANGE_KIND_TAG:
		return "change.tagged"
	case eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED:
		return "change.pr_opened"
	case eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED:
		return "change.pr_updated"
	case eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_CLOSED:
		return "change.pr_closed"
	case eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_MERGED:
		return "change.pr_merged"
	case eventsv1.ChangeKind_CHANGE_KIND_BRANCH_DELETED:
		return "change.branch_deleted"
	case eventsv1.ChangeKind_CHANGE_KIND_TAG_DELETED:
		return "change.tag_deleted"
	}
	return "change.unknown"
}

type hookReply struct {
	EventID    string   `json:"event_id,omitempty"`
	EventIDs   []string `json:"event_ids,omitempty"`
	Type       string   `json:"type,omitempty"`
	Repository string   `json:"repository,omitempty"`
	Duplicate  bool     `json:"duplicate,omitempty"`
	Ignored    string   `json:"ignored,omitempty"`
	Error      string   `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Service) serveHook(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("forge")
	if !forges[name] {
		writeJSON(w, http.StatusNotFound, hookReply{Error: fmt.Sprintf("unknown forge %q: use one of github, gitlab, gitea, forgejo, bitbucket, generic", name)})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, hookReply{Error: fmt.Sprintf("webhook body is over the %d MiB limit", s.cfg.MaxBodyBytes>>20)})
			return
		}
		writeJSON(w, http.StatusBadRequest, hookReply{Error: "reading body: " + err.Error()})
		return
	}
	changes, err := forge.ParseAll(name, r.Header, body)
	if err != nil {
		var bad *forge.BadRequestError
		switch {
		case errors.Is(err, forge.ErrIgnored):
			writeJSON(w, http.StatusOK, hookReply{Ignored: err.Error()})
		case errors.As(err, &bad):
			writeJSON(w, http.StatusBadRequest, hookReply{Error: err.Error()})
		default:
			writeJSON(w, http.StatusBadRequest, hookReply{Error: err.Error()})
		}
		return
	}
	// One delivery can carry several changes (a Bitbucket push of several
	// refs); they all belong to one repository.
	ch := changes[0]
	repo, err := s.repository(r.Context(), ch.Repository)
	if errors.Is(err, errNotFound) {
		writeJSON(w, http.StatusNotFound, hookReply{Error: fmt.Sprintf("repository %q is not registered: run `shiploop repo add %s --clone-url URL` and set the webhook secret it prints", ch.Repository, ch.Repository)})
		return
	}
	if err != nil {
		s.log.Error("looking up repository", "repository", ch.Repository, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, hookReply{Error: "storage unavailable, retry later"})
		return
	}
	if err := forge.Verify(name, r.Header, body, repo.secret); err != nil {
		writeJSON(w, http.StatusUnauthorized, hookReply{Error: err.Error()})
		return
	}
	vs, err := s.vcsSettings(r.Context(), repo.name)
	if err != nil {
		s.log.Error("looking up repository", "repository", ch.Repository, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, hookReply{Error: "storage unavailable, retry later"})
		return
	}
	for _, ch := range changes {
		if err := checkChangeArgs(vs.vcs, ch); err != nil {
			writeJSON(w, http.StatusBadRequest, hookReply{Error: "invalid change: " + err.Error()})
			return
		}
	}
	var reply hookReply
	for i, ch := range changes {
		// Clone what was registered, never a URL a payload names.
		ch.CloneUrl = repo.cloneURL
		if ch.DefaultBranch == "" {
			ch.DefaultBranch = repo.defaultBranch
		}
		ch.Forge = name
		if ch.DeliveryId == "" {
			ch.DeliveryId = forge.DeliveryID(name, r.Header)
		}
		one, err := s.acceptChange(r.Context(), ch)
		if err != nil {
			s.log.Error("accepting change", "repository", ch.Repository, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, hookReply{Error: "could not record the change, retry later"})
			return
		}
		if i == 0 {
			reply = one
		}
		reply.EventIDs = append(reply.EventIDs, one.EventID)
	}
	code := http.StatusAccepted
	if reply.Duplicate {
		code = http.StatusOK
	}
	writeJSON(w, code, reply)
}

// acceptChange records the delivery and publishes the change event in one
// transaction; a delivery id seen before publishes nothing.
func (s *Service) acceptChange(ctx context.Context, ch *eventsv1.Change) (hookReply, error) {
	ev := bus.NewEvent(changeType(ch.Kind), ch.Repository, ch.After, ch)
	ev.ChainID = ev.ID
	reply := hookReply{EventID: ev.ID, Type: ev.Type, Repository: ch.Repository}
	err := s.ob.InTx(ctx, func(tx *bus.Tx) error {
		reply.Duplicate = false
		if ch.DeliveryId != "" {
			// ON CONFLICT, not a caught unique violation: PostgreSQL aborts
			// the whole transaction on an error.
			res, err := tx.ExecContext(ctx,
				`INSERT INTO deliveries (forge, delivery_id, event_id, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT (forge, delivery_id) DO NOTHING`,
				ch.Forge, ch.DeliveryId, ev.ID, time.Now().UnixNano())
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				reply.Duplicate = true
				return tx.QueryRowContext(ctx, `SELECT event_id FROM deliveries WHERE forge = $1 AND delivery_id = $2`,
					ch.Forge, ch.DeliveryId).Scan(&reply.EventID)
			}
		}
		return tx.Publish(ev)
	})
	return reply, err
}

var errNotFound = errors.New("not found")

type repoRow struct {
	name, cloneURL, defaultBranch, secret string
	createdAt                             int64
}

func (s *Service) repository(ctx context.Context, name string) (repoRow, error) {
	var r repoRow
	err := s.db.QueryRowContext(ctx,
		`SELECT name, clone_url, default_branch, webhook_secret, created_at FROM repositories WHERE name = $1`, name).
		Scan(&r.name, &r.cloneURL, &r.defaultBranch, &r.secret, &r.createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return r, errNotFound
	}
	return r, err
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func normalizeRepoName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || strings.ContainsAny(name, " \t\n") {
		return "", fmt.Errorf("repository name %q: want a full name like \"acme/web\"", name)
	}
	return name, nil
}
