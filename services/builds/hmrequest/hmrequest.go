// Package hmrequest reads the variables of a Phabricator/Phorge
// Harbormaster "Make HTTP Request" build step's call to
// /hooks/harbormaster and checks them, each error naming the variable at
// fault. It is apart from the builds service so that it can be fuzzed
// without linking the service.
package hmrequest

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Request is what a "Make HTTP Request" step sent.
type Request struct {
	Repo       string // shiploop's name for the repository ("repo" parameter)
	Token      string
	TargetPHID string
	DiffID     int64
	RevisionID int64
	Commit     string
	URI        string
	VCS        string
	Callsign   string
}

// FieldError is a request error naming the variable at fault.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

var (
	// PHID matches a Phabricator object id (target.phid).
	PHID = regexp.MustCompile(`^PHID-[A-Z]{4}-[A-Za-z0-9]{1,64}$`)
	// CommitHash matches a full commit hash: 40 hex digits (git SHA-1,
	// Mercurial) or 64 (git SHA-256).
	CommitHash = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	revRe      = regexp.MustCompile(`^D?([1-9][0-9]{0,17})$`)
	numberRe   = regexp.MustCompile(`^[1-9][0-9]{0,17}$`)
)

// Parse reads the variables of a Harbormaster request from the
// query and the form (a template like
// /hooks/harbormaster?repo=acme/web&target.phid=${target.phid}&buildable.diff=${buildable.diff}&buildable.commit=${buildable.commit}).
// The token comes from HTTP basic auth (a Passphrase credential on the
// step), a "token" variable, or "Authorization: Bearer".
func Parse(r *http.Request) (Request, error) {
	var q Request
	if err := r.ParseForm(); err != nil {
		return q, &FieldError{"body", "not a form: " + err.Error()}
	}
	get := func(k string) string { return strings.TrimSpace(r.Form.Get(k)) }
	q.Repo, q.Token, q.TargetPHID = get("repo"), get("token"), get("target.phid")
	if _, pw, ok := r.BasicAuth(); ok && q.Token == "" {
		q.Token = pw
	}
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && q.Token == "" {
		q.Token = strings.TrimSpace(b)
	}
	q.Commit, q.URI, q.VCS, q.Callsign = strings.ToLower(get("buildable.commit")), get("repository.uri"), strings.ToLower(get("repository.vcs")), get("repository.callsign")
	if d := get("buildable.diff"); d != "" {
		if !numberRe.MatchString(d) {
			return q, &FieldError{"buildable.diff", fmt.Sprintf("%q is not a diff id", d)}
		}
		q.DiffID, _ = strconv.ParseInt(d, 10, 64)
	}
	if rv := get("buildable.revision"); rv != "" {
		m := revRe.FindStringSubmatch(rv)
		if m == nil {
			return q, &FieldError{"buildable.revision", fmt.Sprintf("%q is not a revision id", rv)}
		}
		q.RevisionID, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return q, nil
}

// Check validates the variables once the caller is known to be allowed.
func (q Request) Check() error {
	switch {
	case q.TargetPHID == "":
		return &FieldError{"target.phid", "required: add target.phid=${target.phid} to the step's URI (results are reported to that build target)"}
	case !PHID.MatchString(q.TargetPHID):
		return &FieldError{"target.phid", fmt.Sprintf("%q is not a PHID", q.TargetPHID)}
	case q.DiffID == 0 && q.Commit == "":
		return &FieldError{"buildable.diff", "one of buildable.diff or buildable.commit is required"}
	case q.Commit != "" && !CommitHash.MatchString(q.Commit):
		return &FieldError{"buildable.commit", fmt.Sprintf("%q is not a full commit hash", q.Commit)}
	case q.VCS != "" && q.VCS != "git" && q.VCS != "hg":
		return &FieldError{"repository.vcs", fmt.Sprintf("%q: shiploop builds git and hg repositories", q.VCS)}
	}
	return nil
}
