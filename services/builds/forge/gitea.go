package forge

// Gitea and Forgejo deliveries. Their payloads are GitHub-shaped (github.go)
// with differences: the new-commits pull request action is "synchronized",
// commits are listed newest first, and create events carry the sha.

import (
	"net/http"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

var giteaPullRequestActions = map[string]eventsv1.ChangeKind{
	"opened":       eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED,
	"reopened":     eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED,
	"synchronized": eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED,
	// GitHub's spelling, in case a version or proxy sends it.
	"synchronize": eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED,
}

func parseGitea(forge string, header http.Header, body []byte) ([]*eventsv1.Change, error) {
	event := header.Get("X-Gitea-Event")
	eventHeader := "X-Gitea-Event"
	if forge == Forgejo {
		// Forgejo also sends the X-Gitea-* headers for compatibility.
		event = firstNonEmpty(header.Get("X-Forgejo-Event"), event)
		eventHeader = "X-Forgejo-Event"
	}
	switch event {
	case "":
		return nil, badRequest("%s delivery: missing %s header", forge, eventHeader)
	case "push":
		var p hubPush
		if err := decode(forge+" push payload", body, &p); err != nil {
			return nil, err
		}
		return hubPushChange(forge, &p, true)
	case "create", "delete":
		var p hubRefEvent
		if err := decode(forge+" "+event+" payload", body, &p); err != nil {
			return nil, err
		}
		return hubRefChange(forge, event, &p)
	case "pull_request":
		var p hubPullRequest
		if err := decode(forge+" pull_request payload", body, &p); err != nil {
			return nil, err
		}
		return hubPullRequestChange(forge, &p, giteaPullRequestActions)
	}
	if err := validObject(forge+" "+event+" payload", body); err != nil {
		return nil, err
	}
	return nil, ignored("%s %q event is not a change", forge, event)
}
