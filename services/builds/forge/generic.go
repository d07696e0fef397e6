package forge

// The generic hook: a JSON shape this package defines, for forges and
// scripts that are not one of the named forges.
//
//	POST with Content-Type: application/json
//	X-Shiploop-Delivery: <id>                  optional, used to drop redeliveries
//	X-Shiploop-Signature: sha256=<hex HMAC-SHA256 of the body keyed with the secret>
//	  or Authorization: Bearer <secret>
//
//	{
//	  "event":      "push",            // push (the default when empty), delete or ping
//	  "repository": "acme/web",        // required
//	  "clone_url":  "https://git.example.com/acme/web.git",
//	  "ref":        "refs/heads/main", // required: a full refs/heads/ or refs/tags/ ref
//	  "commit":     "<sha>",           // required for push: the commit to build
//	  "before":     "<sha>",           // optional: the ref's previous commit
//	  "sender":     "release-bot"      // optional
//	}
//
// A push to refs/heads/* is a PUSH, to refs/tags/* a TAG; a delete is a
// BRANCH_DELETED or TAG_DELETED; a ping is ignored. Unknown fields are
// rejected so that a misspelt field is an error rather than silently empty.

import (
	"net/http"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

type genericPayload struct {
	Event      string `json:"event"`
	Repository string `json:"repository"`
	CloneURL   string `json:"clone_url"`
	Ref        string `json:"ref"`
	Commit     string `json:"commit"`
	Before     string `json:"before"`
	Sender     string `json:"sender"`
}

func parseGeneric(_ http.Header, body []byte) ([]*eventsv1.Change, error) {
	const what = "generic payload"
	var p genericPayload
	if err := decodeStrict(what, body, &p); err != nil {
		return nil, err
	}
	var deleted bool
	switch p.Event {
	case "", "push":
	case "delete":
		deleted = true
	case "ping":
		return nil, ignored("generic ping event")
	default:
		return nil, badRequest("%s: unknown event %q, want push, delete or ping", what, p.Event)
	}
	switch {
	case p.Repository == "":
		return nil, missing(what, "repository")
	case p.Ref == "":
		return nil, missing(what, "ref")
	case !deleted && p.Commit == "":
		return nil, missing(what, "commit")
	}
	kind := refKind(p.Ref, deleted)
	if kind == eventsv1.ChangeKind_CHANGE_KIND_UNSPECIFIED {
		return nil, badRequest("%s: ref %q is not a full refs/heads/ or refs/tags/ ref", what, p.Ref)
	}
	after := p.Commit
	if deleted {
		after = zeroSHA
	}
	return []*eventsv1.Change{{
		Kind:       kind,
		Repository: p.Repository,
		CloneUrl:   p.CloneURL,
		Ref:        p.Ref,
		Before:     p.Before,
		After:      after,
		Sender:     p.Sender,
	}}, nil
}
