// Package forge parses and authenticates webhook deliveries from code forges
// (GitHub, GitLab, Gitea, Forgejo, Bitbucket Cloud and Data Center, and a
// generic JSON hook) and normalises each to one *eventsv1.Change.
//
// A receiver calls Parse to learn which repository a delivery is for, looks
// up that repository's secret, and calls Verify before acting on the change.
// Parse never authenticates; nothing it returns may be trusted until Verify
// has returned nil.
//
// # Normalisation
//
//   - Ref is always a full ref (refs/heads/main, refs/tags/v1.2.0); Branch
//     and Tag are the short names derived from it. For pull requests Ref,
//     Branch and After are the head (source) branch and commit; BaseRef is
//     the full ref of the base (target) branch and BaseSha its commit when the
//     forge sends it (GitLab does not).
//   - After is the commit to build. For tags it is the tagged commit, not
//     the annotated tag object: GitLab's tag_push sends the tag object in
//     "after" and the commit in "checkout_sha", and checkout_sha is used.
//     Before is all zeros for a ref that did not exist; After is all zeros for
//     a deleted ref.
//   - CloneURL is where Ref and After can be fetched: for a pull request from
//     a fork that is the fork, not the repository the hook belongs to
//     (Repository).
//   - Commits are oldest first, as GitHub and GitLab send them; Gitea,
//     Forgejo and Bitbucket Cloud send newest first and are reversed.
//     Forges cap the list (GitLab 20, Bitbucket Cloud 5), so it is a sample,
//     not the whole push.
//   - A tag can arrive twice: GitHub and Gitea/Forgejo send both a push of
//     refs/tags/<name> and a "create" event. Both become CHANGE_KIND_TAG with
//     the same Repository and Tag; GitHub's create event carries no commit,
//     so its After is empty. Deletions likewise arrive as a push with
//     deleted:true and as a "delete" event. Callers dedupe on
//     (Repository, Kind, Ref).
//   - Events that are valid but not changes (pings, pipeline and comment
//     hooks, pull request label/edit actions, branch "create" events whose
//     push also arrives, GitLab merge request updates without new commits)
//     return an error wrapping ErrIgnored.
//
// # Bitbucket
//
// The "bitbucket" forge accepts both Bitbucket Cloud (repo:push,
// pullrequest:*) and Bitbucket Data Center (repo:refs_changed, pr:*), told
// apart by X-Event-Key. Bitbucket Cloud pull request payloads carry 12-digit
// abbreviated commit hashes. A Data Center repository's full name is
// "<PROJECT KEY>/<slug>".
//
// One Bitbucket push can change several refs; ParseAll returns a Change for
// each, Parse only the first.
package forge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// Forge names accepted by Parse, Verify and DeliveryID. They are also the
// values of Change.Forge.
const (
	GitHub    = "github"
	GitLab    = "gitlab"
	Gitea     = "gitea"
	Forgejo   = "forgejo"
	Bitbucket = "bitbucket"
	Generic   = "generic"
)

var (
	// ErrIgnored marks a delivery that is valid but is not a change to build,
	// such as a ping. The wrapping error says why; answer it with 2xx.
	ErrIgnored = errors.New("ignored")
	// ErrUnauthorized marks a delivery whose authentication is missing or
	// wrong. The wrapping error names the header, never a secret.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnknownForge is returned for a forge name that is none of the
	// constants above.
	ErrUnknownForge = errors.New("unknown forge")
)

// BadRequestError is a delivery that cannot be parsed: malformed JSON, a
// missing field or header, an unsupported Content-Type.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

func badRequest(format string, args ...any) error {
	return &BadRequestError{Msg: fmt.Sprintf(format, args...)}
}

func missing(what, field string) error {
	return &BadRequestError{Msg: what + ": missing " + field}
}

func ignored(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrIgnored, fmt.Sprintf(format, args...))
}

// zeroSHA is what forges send as the "before" of a new ref and the "after" of
// a deleted one.
const zeroSHA = "0000000000000000000000000000000000000000"

// Parse reads one delivery and returns the change it describes. It does not
// check authentication: call Verify with the secret of the returned
// Change.Repository before trusting it.
//
// A valid delivery that is not a change returns an error wrapping
// ErrIgnored; malformed input returns a *BadRequestError; an unknown forge
// name returns an error wrapping ErrUnknownForge. A delivery that changed
// several refs (Bitbucket) returns only the first; see ParseAll.
func Parse(forge string, header http.Header, body []byte) (*eventsv1.Change, error) {
	changes, err := ParseAll(forge, header, body)
	if err != nil {
		return nil, err
	}
	return changes[0], nil
}

// ParseAll is Parse for deliveries that may carry more than one change: a
// Bitbucket push that updated several refs yields one Change per ref, and
// each gets DeliveryId "<delivery id>/<index>" so that a redelivery dedupes
// per ref. Every other forge yields exactly one. On success the slice is
// never empty.
func ParseAll(forge string, header http.Header, body []byte) ([]*eventsv1.Change, error) {
	var parse func(http.Header, []byte) ([]*eventsv1.Change, error)
	switch forge {
	case GitHub:
		parse = parseGitHub
	case GitLab:
		parse = parseGitLab
	case Gitea, Forgejo:
		parse = func(h http.Header, b []byte) ([]*eventsv1.Change, error) { return parseGitea(forge, h, b) }
	case Bitbucket:
		parse = parseBitbucket
	case Generic:
		parse = parseGeneric
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownForge, forge)
	}
	payload, err := payloadJSON(forge, header, body)
	if err != nil {
		return nil, err
	}
	changes, err := parse(header, payload)
	if err != nil {
		return nil, err
	}
	id := DeliveryID(forge, header)
	for i, c := range changes {
		c.Forge = forge
		c.DeliveryId = id
		if id != "" && len(changes) > 1 {
			c.DeliveryId = id + "/" + strconv.Itoa(i)
		}
		c.Branch, c.Tag = splitRef(c.Ref)
		if c.Branch == "" && c.Tag == "" {
			return nil, badRequest("%s delivery: ref %q is neither a branch nor a tag", forge, c.Ref)
		}
	}
	return changes, nil
}

// DeliveryID returns the forge's id for this delivery, which stays the same
// when the forge redelivers it, or "" if the delivery has none.
func DeliveryID(forge string, header http.Header) string {
	switch forge {
	case GitHub:
		return header.Get("X-GitHub-Delivery")
	case GitLab:
		return firstHeader(header, "Idempotency-Key", "X-Gitlab-Event-UUID")
	case Gitea:
		return header.Get("X-Gitea-Delivery")
	case Forgejo:
		return firstHeader(header, "X-Forgejo-Delivery", "X-Gitea-Delivery")
	case Bitbucket:
		// Cloud sends X-Request-UUID, Data Center X-Request-Id.
		return firstHeader(header, "X-Request-UUID", "X-Request-Id")
	case Generic:
		return header.Get("X-Shiploop-Delivery")
	}
	return ""
}

func firstHeader(header http.Header, names ...string) string {
	for _, name := range names {
		if v := header.Get(name); v != "" {
			return v
		}
	}
	return ""
}

// payloadJSON returns the JSON document of a delivery. GitHub and Gitea can
// be configured to send application/x-www-form-urlencoded with the JSON in
// a "payload" field; a form-typed body that is itself JSON (what `curl -d`
// sends) is taken as JSON.
func payloadJSON(forge string, header http.Header, body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, badRequest("%s delivery: empty body", forge)
	}
	ct := header.Get("Content-Type")
	if ct == "" {
		return body, nil
	}
	mediaType, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, badRequest("%s delivery: malformed Content-Type %q", forge, ct)
	}
	switch {
	case mediaType == "application/json", mediaType == "text/json", strings.HasSuffix(mediaType, "+json"):
		return body, nil
	case mediaType == "application/x-www-form-urlencoded":
		if trimmed[0] == '{' {
			return body, nil
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, badRequest("%s delivery: parsing form body: %v", forge, err)
		}
		payload := form.Get("payload")
		if strings.TrimSpace(payload) == "" {
			return nil, badRequest("%s delivery: form body has no payload field", forge)
		}
		return []byte(payload), nil
	}
	return nil, badRequest("%s delivery: unsupported Content-Type %q, want application/json or application/x-www-form-urlencoded", forge, mediaType)
}

// decode unmarshals a payload, turning JSON errors into a *BadRequestError
// that names the payload ("github push payload") and the offset.
func decode(what string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return &BadRequestError{Msg: "parsing " + what + ": " + describeJSONError(err)}
	}
	return nil
}

// decodeStrict is decode that rejects unknown fields, for the generic format
// this package defines (a misspelt field is an error, not silently empty).
func decodeStrict(what string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = fmt.Errorf("unexpected data after the JSON object at offset %d", dec.InputOffset())
	}
	if err != nil {
		return &BadRequestError{Msg: "parsing " + what + ": " + describeJSONError(err)}
	}
	return nil
}

// validObject checks the body of an ignored event is still a JSON object, so
// that garbage is a bad request whatever the event header says.
func validObject(what string, data []byte) error {
	return decode(what, data, &struct{}{})
}

func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("%s at offset %d", syntax.Error(), syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("got a JSON %s, want an object", typ.Value)
		}
		return fmt.Sprintf("%s is a JSON %s, want %s (offset %d)", typ.Field, typ.Value, typ.Type, typ.Offset)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// splitRef returns the short branch or tag name of a full ref.
func splitRef(ref string) (branch, tag string) {
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		return b, ""
	}
	if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		return "", t
	}
	return "", ""
}

// isZeroSHA reports whether sha is the all-zero id (SHA-1 or SHA-256) forges
// send for a ref that does not exist.
func isZeroSHA(sha string) bool {
	return sha != "" && strings.Trim(sha, "0") == ""
}

// refKind says what a change to a full ref is, or UNSPECIFIED for refs that
// are neither branches nor tags (notes, pull request refs...).
func refKind(ref string, deleted bool) eventsv1.ChangeKind {
	switch branch, tag := splitRef(ref); {
	case branch != "" && deleted:
		return eventsv1.ChangeKind_CHANGE_KIND_BRANCH_DELETED
	case branch != "":
		return eventsv1.ChangeKind_CHANGE_KIND_PUSH
	case tag != "" && deleted:
		return eventsv1.ChangeKind_CHANGE_KIND_TAG_DELETED
	case tag != "":
		return eventsv1.ChangeKind_CHANGE_KIND_TAG
	}
	return eventsv1.ChangeKind_CHANGE_KIND_UNSPECIFIED
}

// fullRef turns the short name of a create/delete event into a full ref.
// Some forge versions already send a full ref; it is kept.
func fullRef(name, refType string) string {
	if strings.HasPrefix(name, "refs/") {
		return name
	}
	if refType == "tag" {
		return "refs/tags/" + name
	}
	return "refs/heads/" + name
}

// jsonCommit is the commit shape GitHub, GitLab, Gitea and Forgejo share.
type jsonCommit struct {
	ID      string `json:"id"`
	Message string `json:"message"`
	URL     string `json:"url"`
	Author  struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	} `json:"author"`
	Added    []string `json:"added"`
	Modified []string `json:"modified"`
	Removed  []string `json:"removed"`
}

func (c jsonCommit) proto() *eventsv1.Commit {
	return &eventsv1.Commit{
		Sha:         c.ID,
		Message:     c.Message,
		AuthorName:  c.Author.Name,
		AuthorEmail: c.Author.Email,
		Url:         c.URL,
		Added:       c.Added,
		Modified:    c.Modified,
		Removed:     c.Removed,
	}
}

// commits converts a commit list, reversing it when the forge sends newest
// first so that every Change lists commits oldest first.
func commits[T any](in []T, newestFirst bool, conv func(T) *eventsv1.Commit) []*eventsv1.Commit {
	if len(in) == 0 {
		return nil
	}
	out := make([]*eventsv1.Commit, len(in))
	for i, c := range in {
		j := i
		if newestFirst {
			j = len(in) - 1 - i
		}
		out[j] = conv(c)
	}
	return out
}

// branchRef returns refs/heads/<name>, or "" for an empty name. A name that
// is already a full ref is kept.
func branchRef(name string) string {
	if name == "" {
		return ""
	}
	return fullRef(name, "branch")
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
