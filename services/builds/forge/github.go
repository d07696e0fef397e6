package forge

// GitHub deliveries, and the GitHub-shaped payloads Gitea and Forgejo share
// (gitea.go): push, create/delete and pull_request.

import (
	"net/http"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

type hubRepository struct {
	FullName      string `json:"full_name"`
	CloneURL      string `json:"clone_url"`
	DefaultBranch string `json:"default_branch"`
	// Older GitHub push payloads call it master_branch.
	MasterBranch string `json:"master_branch"`
}

type hubUser struct {
	Login    string `json:"login"`
	Username string `json:"username"` // Gitea
	Name     string `json:"name"`     // GitHub's pusher
}

func (u hubUser) name() string { return firstNonEmpty(u.Login, u.Username, u.Name) }

type hubPush struct {
	Ref        string        `json:"ref"`
	Before     string        `json:"before"`
	After      string        `json:"after"`
	Deleted    bool          `json:"deleted"`
	Forced     bool          `json:"forced"`
	Compare    string        `json:"compare"`     // GitHub
	CompareURL string        `json:"compare_url"` // Gitea
	Commits    []jsonCommit  `json:"commits"`
	HeadCommit *jsonCommit   `json:"head_commit"`
	Repository hubRepository `json:"repository"`
	Sender     hubUser       `json:"sender"`
	Pusher     hubUser       `json:"pusher"`
}

// hubRefEvent is a create or delete event: ref is the short name.
type hubRefEvent struct {
	Ref        string        `json:"ref"`
	RefType    string        `json:"ref_type"`
	SHA        string        `json:"sha"` // Gitea only
	Repository hubRepository `json:"repository"`
	Sender     hubUser       `json:"sender"`
}

type hubPullRequest struct {
	Action      string `json:"action"`
	Number      int64  `json:"number"`
	Before      string `json:"before"` // GitHub synchronize
	PullRequest struct {
		Number  int64         `json:"number"`
		Title   string        `json:"title"`
		HTMLURL string        `json:"html_url"`
		Merged  bool          `json:"merged"`
		Head    hubPullRefEnd `json:"head"`
		Base    hubPullRefEnd `json:"base"`
	} `json:"pull_request"`
	Repository hubRepository `json:"repository"`
	Sender     hubUser       `json:"sender"`
}

type hubPullRefEnd struct {
	Ref  string         `json:"ref"`
	SHA  string         `json:"sha"`
	Repo *hubRepository `json:"repo"`
}

func parseGitHub(header http.Header, body []byte) ([]*eventsv1.Change, error) {
	event := header.Get("X-GitHub-Event")
	switch event {
	case "":
		return nil, badRequest("github delivery: missing X-GitHub-Event header")
	case "push":
		var p hubPush
		if err := decode("github push payload", body, &p); err != nil {
			return nil, err
		}
		return hubPushChange(GitHub, &p, false)
	case "create", "delete":
		var p hubRefEvent
		if err := decode("github "+event+" payload", body, &p); err != nil {
			return nil, err
		}
		return hubRefChange(GitHub, event, &p)
	case "pull_request":
		var p hubPullRequest
		if err := decode("github pull_request payload", body, &p); err != nil {
			return nil, err
		}
		return hubPullRequestChange(GitHub, &p, map[string]eventsv1.ChangeKind{
			"opened":      eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED,
			"reopened":    eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED,
			"synchronize": eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED,
		})
	}
	if err := validObject("github "+event+" payload", body); err != nil {
		return nil, err
	}
	if event == "ping" {
		return nil, ignored("github ping event")
	}
	return nil, ignored("github %q event is not a change", event)
}

func hubPushChange(forge string, p *hubPush, newestFirst bool) ([]*eventsv1.Change, error) {
	what := forge + " push payload"
	if p.Repository.FullName == "" {
		return nil, missing(what, "repository.full_name")
	}
	if p.Ref == "" {
		return nil, missing(what, "ref")
	}
	deleted := p.Deleted || isZeroSHA(p.After)
	if !deleted && p.After == "" {
		return nil, missing(what, "after")
	}
	kind := refKind(p.Ref, deleted)
	if kind == eventsv1.ChangeKind_CHANGE_KIND_UNSPECIFIED {
		return nil, ignored("%s push to %q is neither a branch nor a tag", forge, p.Ref)
	}
	after := p.After
	if kind == eventsv1.ChangeKind_CHANGE_KIND_TAG && p.HeadCommit != nil && p.HeadCommit.ID != "" {
		// For an annotated tag "after" may be the tag object; head_commit is
		// the commit it points to.
		after = p.HeadCommit.ID
	}
	return []*eventsv1.Change{{
		Kind:          kind,
		Repository:    p.Repository.FullName,
		CloneUrl:      p.Repository.CloneURL,
		DefaultBranch: firstNonEmpty(p.Repository.DefaultBranch, p.Repository.MasterBranch),
		Ref:           p.Ref,
		Before:        p.Before,
		After:         after,
		Commits:       commits(p.Commits, newestFirst, jsonCommit.proto),
		Sender:        firstNonEmpty(p.Sender.name(), p.Pusher.name()),
		CompareUrl:    firstNonEmpty(p.Compare, p.CompareURL),
		Forced:        p.Forced,
	}}, nil
}

// hubRefChange handles create and delete events. A created branch is
// ignored because its push event also arrives; a created tag is a TAG even
// though its push also arrives, because Gitea builds tags from create and
// GitHub may send only one of the two (callers dedupe).
func hubRefChange(forge, event string, p *hubRefEvent) ([]*eventsv1.Change, error) {
	what := forge + " " + event + " payload"
	if p.Repository.FullName == "" {
		return nil, missing(what, "repository.full_name")
	}
	if p.Ref == "" {
		return nil, missing(what, "ref")
	}
	if p.RefType != "tag" && p.RefType != "branch" {
		return nil, ignored("%s %s event for ref_type %q", forge, event, p.RefType)
	}
	c := &eventsv1.Change{
		Repository:    p.Repository.FullName,
		CloneUrl:      p.Repository.CloneURL,
		DefaultBranch: firstNonEmpty(p.Repository.DefaultBranch, p.Repository.MasterBranch),
		Ref:           fullRef(p.Ref, p.RefType),
		Sender:        p.Sender.name(),
	}
	switch {
	case event == "create" && p.RefType == "branch":
		return nil, ignored("%s create event for branch %q: its push event covers it", forge, p.Ref)
	case event == "create":
		c.Kind = eventsv1.ChangeKind_CHANGE_KIND_TAG
		c.Before = zeroSHA
		c.After = p.SHA // GitHub sends no sha: After stays empty.
	case p.RefType == "branch":
		c.Kind = eventsv1.ChangeKind_CHANGE_KIND_BRANCH_DELETED
		c.After = zeroSHA
	default:
		c.Kind = eventsv1.ChangeKind_CHANGE_KIND_TAG_DELETED
		c.After = zeroSHA
	}
	return []*eventsv1.Change{c}, nil
}

// hubPullRequestChange maps a pull_request event; actions maps every action
// except "closed" that is a change, the rest are ignored.
func hubPullRequestChange(forge string, p *hubPullRequest, actions map[string]eventsv1.ChangeKind) ([]*eventsv1.Change, error) {
	what := forge + " pull_request payload"
	kind, ok := actions[p.Action]
	switch {
	case p.Action == "closed" && p.PullRequest.Merged:
		kind = eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_MERGED
	case p.Action == "closed":
		kind = eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_CLOSED
	case p.Action == "":
		return nil, missing(what, "action")
	case !ok:
		return nil, ignored("%s pull_request action %q is not a code change", forge, p.Action)
	}
	number := p.Number
	if number == 0 {
		number = p.PullRequest.Number
	}
	switch {
	case p.Repository.FullName == "":
		return nil, missing(what, "repository.full_name")
	case number <= 0:
		return nil, missing(what, "number")
	case p.PullRequest.Head.Ref == "":
		return nil, missing(what, "pull_request.head.ref")
	case p.PullRequest.Head.SHA == "":
		return nil, missing(what, "pull_request.head.sha")
	}
	cloneURL := p.Repository.CloneURL
	if head := p.PullRequest.Head.Repo; head != nil && head.CloneURL != "" {
		cloneURL = head.CloneURL
	}
	return []*eventsv1.Change{{
		Kind:              kind,
		Repository:        p.Repository.FullName,
		CloneUrl:          cloneURL,
		DefaultBranch:     p.Repository.DefaultBranch,
		Ref:               "refs/heads/" + p.PullRequest.Head.Ref,
		Before:            p.Before,
		After:             p.PullRequest.Head.SHA,
		Sender:            p.Sender.name(),
		CompareUrl:        p.PullRequest.HTMLURL,
		PullRequestNumber: number,
		PullRequestTitle:  p.PullRequest.Title,
		BaseRef:           branchRef(p.PullRequest.Base.Ref),
		BaseSha:           p.PullRequest.Base.SHA,
	}}, nil
}
