package forge

// Bitbucket deliveries. Cloud and Data Center share X-Event-Key and the
// X-Hub-Signature scheme but not their payloads; the event key tells them
// apart (Cloud: repo:push, pullrequest:*; Data Center: repo:refs_changed, pr:*).

import (
	"net/http"
	"strings"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

func parseBitbucket(header http.Header, body []byte) ([]*eventsv1.Change, error) {
	key := header.Get("X-Event-Key")
	switch key {
	case "":
		return nil, badRequest("bitbucket delivery: missing X-Event-Key header")
	case "repo:push":
		var p bitbucketCloudPush
		if err := decode("bitbucket repo:push payload", body, &p); err != nil {
			return nil, err
		}
		return bitbucketCloudPushChanges(&p)
	case "pullrequest:created", "pullrequest:updated", "pullrequest:fulfilled", "pullrequest:rejected":
		var p bitbucketCloudPullRequest
		if err := decode("bitbucket "+key+" payload", body, &p); err != nil {
			return nil, err
		}
		return bitbucketCloudPullRequestChange(key, &p)
	case "repo:refs_changed":
		var p bitbucketDCPush
		if err := decode("bitbucket repo:refs_changed payload", body, &p); err != nil {
			return nil, err
		}
		return bitbucketDCPushChanges(&p)
	case "pr:opened", "pr:from_ref_updated", "pr:merged", "pr:declined", "pr:deleted":
		var p bitbucketDCPullRequest
		if err := decode("bitbucket "+key+" payload", body, &p); err != nil {
			return nil, err
		}
		return bitbucketDCPullRequestChange(key, &p)
	}
	if err := validObject("bitbucket "+key+" payload", body); err != nil {
		return nil, err
	}
	return nil, ignored("bitbucket %q event is not a change", key)
}

// Bitbucket Cloud.

type bitbucketLink struct {
	Href string `json:"href"`
}

type bitbucketCloudRepository struct {
	FullName   string `json:"full_name"`
	MainBranch *struct {
		Name string `json:"name"`
	} `json:"mainbranch"`
}

// cloneURL is the HTTPS clone URL. Cloud payloads do not carry one, and
// Bitbucket Cloud is only bitbucket.org, so it is built from the full name
// (links.html is not used: Atlassian's own examples put api.bitbucket.org
// there).
func (r *bitbucketCloudRepository) cloneURL() string {
	if r.FullName == "" {
		return ""
	}
	return "https://bitbucket.org/" + r.FullName + ".git"
}

func (r *bitbucketCloudRepository) defaultBranch() string {
	if r.MainBranch == nil {
		return ""
	}
	return r.MainBranch.Name
}

type bitbucketCloudActor struct {
	Nickname    string `json:"nickname"`
	DisplayName string `json:"display_name"`
	Username    string `json:"username"` // removed by Atlassian in 2019, still in old payloads
}

func (a bitbucketCloudActor) name() string {
	return firstNonEmpty(a.Nickname, a.Username, a.DisplayName)
}

type bitbucketCloudRef struct {
	Name   string `json:"name"`
	Type   string `json:"type"` // branch, tag
	Target struct {
		Hash string `json:"hash"`
	} `json:"target"`
}

type bitbucketCloudCommit struct {
	Hash    string `json:"hash"`
	Message string `json:"message"`
	Author  struct {
		Raw string `json:"raw"` // "Name <email>"
	} `json:"author"`
	Links struct {
		HTML bitbucketLink `json:"html"`
	} `json:"links"`
}

func (c bitbucketCloudCommit) proto() *eventsv1.Commit {
	name, email := splitAuthor(c.Author.Raw)
	return &eventsv1.Commit{
		Sha:         c.Hash,
		Message:     c.Message,
		AuthorName:  name,
		AuthorEmail: email,
		Url:         c.Links.HTML.Href,
	}
}

// splitAuthor splits a git "Name <email>" string.
func splitAuthor(raw string) (name, email string) {
	open := strings.LastIndexByte(raw, '<')
	if open < 0 || !strings.HasSuffix(raw, ">") {
		return strings.TrimSpace(raw), ""
	}
	return strings.TrimSpace(raw[:open]), raw[open+1 : len(raw)-1]
}

type bitbucketCloudPush struct {
	Actor      bitbucketCloudActor      `json:"actor"`
	Repository bitbucketCloudRepository `json:"repository"`
	Push       struct {
		Changes []struct {
			Old     *bitbucketCloudRef     `json:"old"`
			New     *bitbucketCloudRef     `json:"new"`
			Forced  bool                   `json:"forced"`
			Commits []bitbucketCloudCommit `json:"commits"`
			Links   struct {
				HTML bitbucketLink `json:"html"`
			} `json:"links"`
		} `json:"changes"`
	} `json:"push"`
}

func bitbucketCloudPushChanges(p *bitbucketCloudPush) ([]*eventsv1.Change, error) {
	const what = "bitbucket repo:push payload"
	if p.Repository.FullName == "" {
		return nil, missing(what, "repository.full_name")
	}
	var out []*eventsv1.Change
	for _, ch := range p.Push.Changes {
		c := &eventsv1.Change{
			Repository:    p.Repository.FullName,
			CloneUrl:      p.Repository.cloneURL(),
			DefaultBranch: p.Repository.defaultBranch(),
			Before:        zeroSHA,
			After:         zeroSHA,
			Sender:        p.Actor.name(),
			CompareUrl:    ch.Links.HTML.Href,
			Forced:        ch.Forced,
		}
		ref := ch.New // nil when the ref was deleted
		if ref == nil {
			ref = ch.Old
		}
		if ref == nil || ref.Name == "" {
			continue
		}
		if ref.Type != "branch" && ref.Type != "tag" {
			continue // Mercurial named branches and bookmarks
		}
		c.Ref = fullRef(ref.Name, ref.Type)
		if ch.Old != nil && ch.Old.Target.Hash != "" {
			c.Before = ch.Old.Target.Hash
		}
		if ch.New != nil {
			if ch.New.Target.Hash == "" {
				return nil, missing(what, "push.changes[].new.target.hash")
			}
			c.After = ch.New.Target.Hash
			c.Commits = commits(ch.Commits, true, bitbucketCloudCommit.proto)
		}
		c.Kind = refKind(c.Ref, ch.New == nil)
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, ignored("bitbucket repo:push changed no branch or tag")
	}
	return out, nil
}

type bitbucketCloudPullRequestEnd struct {
	Branch struct {
		Name string `json:"name"`
	} `json:"branch"`
	Commit struct {
		Hash string `json:"hash"`
	} `json:"commit"`
	Repository bitbucketCloudRepository `json:"repository"`
}

type bitbucketCloudPullRequest struct {
	Actor       bitbucketCloudActor      `json:"actor"`
	Repository  bitbucketCloudRepository `json:"repository"`
	PullRequest struct {
		ID          int64                        `json:"id"`
		Title       string                       `json:"title"`
		Source      bitbucketCloudPullRequestEnd `json:"source"`
		Destination bitbucketCloudPullRequestEnd `json:"destination"`
		Links       struct {
			HTML bitbucketLink `json:"html"`
		} `json:"links"`
	} `json:"pullrequest"`
}

func bitbucketCloudPullRequestChange(key string, p *bitbucketCloudPullRequest) ([]*eventsv1.Change, error) {
	what := "bitbucket " + key + " payload"
	pr := &p.PullRequest
	switch {
	case p.Repository.FullName == "":
		return nil, missing(what, "repository.full_name")
	case pr.ID <= 0:
		return nil, missing(what, "pullrequest.id")
	case pr.Source.Branch.Name == "":
		return nil, missing(what, "pullrequest.source.branch.name")
	case pr.Source.Commit.Hash == "":
		return nil, missing(what, "pullrequest.source.commit.hash")
	}
	kind := map[string]eventsv1.ChangeKind{
		// Bitbucket sends updated for title and description edits too; it
		// cannot be told apart from new commits.
		"pullrequest:created":   eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED,
		"pullrequest:updated":   eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED,
		"pullrequest:fulfilled": eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_MERGED,
		"pullrequest:rejected":  eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_CLOSED,
	}[key]
	cloneURL := p.Repository.cloneURL()
	if pr.Source.Repository.FullName != "" {
		cloneURL = pr.Source.Repository.cloneURL()
	}
	return []*eventsv1.Change{{
		Kind:              kind,
		Repository:        p.Repository.FullName,
		CloneUrl:          cloneURL,
		DefaultBranch:     p.Repository.defaultBranch(),
		Ref:               "refs/heads/" + pr.Source.Branch.Name,
		After:             pr.Source.Commit.Hash,
		Sender:            p.Actor.name(),
		CompareUrl:        pr.Links.HTML.Href,
		PullRequestNumber: pr.ID,
		PullRequestTitle:  pr.Title,
		BaseRef:           branchRef(pr.Destination.Branch.Name),
		BaseSha:           pr.Destination.Commit.Hash,
	}}, nil
}

// Bitbucket Data Center (Server).

type bitbucketDCRepository struct {
	Slug    string `json:"slug"`
	Project struct {
		Key string `json:"key"`
	} `json:"project"`
	Links struct {
		Clone []struct {
			Name string `json:"name"`
			Href string `json:"href"`
		} `json:"clone"`
	} `json:"links"`
}

func (r *bitbucketDCRepository) fullName() string {
	if r.Project.Key == "" || r.Slug == "" {
		return ""
	}
	return r.Project.Key + "/" + r.Slug
}

func (r *bitbucketDCRepository) cloneURL() string {
	for _, l := range r.Links.Clone {
		if l.Name == "http" || l.Name == "https" {
			return l.Href
		}
	}
	return ""
}

type bitbucketDCUser struct {
	Name         string `json:"name"`
	Slug         string `json:"slug"`
	DisplayName  string `json:"displayName"`
	EmailAddress string `json:"emailAddress"`
}

type bitbucketDCCommit struct {
	ID      string          `json:"id"`
	Message string          `json:"message"`
	Author  bitbucketDCUser `json:"author"`
}

func (c bitbucketDCCommit) proto() *eventsv1.Commit {
	return &eventsv1.Commit{
		Sha:         c.ID,
		Message:     c.Message,
		AuthorName:  firstNonEmpty(c.Author.DisplayName, c.Author.Name),
		AuthorEmail: c.Author.EmailAddress,
	}
}

type bitbucketDCPush struct {
	Actor      bitbucketDCUser       `json:"actor"`
	Repository bitbucketDCRepository `json:"repository"`
	Changes    []struct {
		Ref struct {
			ID   string `json:"id"`
			Type string `json:"type"` // BRANCH, TAG
		} `json:"ref"`
		RefID    string `json:"refId"`
		FromHash string `json:"fromHash"`
		ToHash   string `json:"toHash"`
		Type     string `json:"type"` // ADD, UPDATE, DELETE
	} `json:"changes"`
	Commits []bitbucketDCCommit `json:"commits"`
}

func bitbucketDCPushChanges(p *bitbucketDCPush) ([]*eventsv1.Change, error) {
	const what = "bitbucket repo:refs_changed payload"
	repository := p.Repository.fullName()
	if repository == "" {
		return nil, missing(what, "repository.project.key or repository.slug")
	}
	var out []*eventsv1.Change
	for _, ch := range p.Changes {
		ref := firstNonEmpty(ch.Ref.ID, ch.RefID)
		deleted := ch.Type == "DELETE" || isZeroSHA(ch.ToHash)
		kind := refKind(ref, deleted)
		if kind == eventsv1.ChangeKind_CHANGE_KIND_UNSPECIFIED {
			continue
		}
		if !deleted && ch.ToHash == "" {
			return nil, missing(what, "changes[].toHash")
		}
		out = append(out, &eventsv1.Change{
			Kind:       kind,
			Repository: repository,
			CloneUrl:   p.Repository.cloneURL(),
			Ref:        ref,
			Before:     ch.FromHash,
			After:      ch.ToHash,
			Sender:     firstNonEmpty(p.Actor.Name, p.Actor.Slug),
		})
	}
	if len(out) == 0 {
		return nil, ignored("bitbucket repo:refs_changed changed no branch or tag")
	}
	// The commit list is per delivery, not per ref: only attach it when it
	// cannot belong to another ref.
	if len(out) == 1 {
		out[0].Commits = commits(p.Commits, false, bitbucketDCCommit.proto)
	}
	return out, nil
}

type bitbucketDCPullRequestEnd struct {
	ID           string                `json:"id"`
	DisplayID    string                `json:"displayId"`
	LatestCommit string                `json:"latestCommit"`
	Repository   bitbucketDCRepository `json:"repository"`
}

type bitbucketDCPullRequest struct {
	Actor            bitbucketDCUser `json:"actor"`
	PreviousFromHash string          `json:"previousFromHash"` // pr:from_ref_updated
	PullRequest      struct {
		ID      int64                     `json:"id"`
		Title   string                    `json:"title"`
		FromRef bitbucketDCPullRequestEnd `json:"fromRef"`
		ToRef   bitbucketDCPullRequestEnd `json:"toRef"`
		Links   struct {
			Self []bitbucketLink `json:"self"`
		} `json:"links"`
	} `json:"pullRequest"`
}

func bitbucketDCPullRequestChange(key string, p *bitbucketDCPullRequest) ([]*eventsv1.Change, error) {
	what := "bitbucket " + key + " payload"
	pr := &p.PullRequest
	repository := pr.ToRef.Repository.fullName()
	switch {
	case repository == "":
		return nil, missing(what, "pullRequest.toRef.repository")
	case pr.ID <= 0:
		return nil, missing(what, "pullRequest.id")
	case pr.FromRef.ID == "":
		return nil, missing(what, "pullRequest.fromRef.id")
	case pr.FromRef.LatestCommit == "":
		return nil, missing(what, "pullRequest.fromRef.latestCommit")
	}
	kind := map[string]eventsv1.ChangeKind{
		"pr:opened":           eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED,
		"pr:from_ref_updated": eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED,
		"pr:merged":           eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_MERGED,
		"pr:declined":         eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_CLOSED,
		"pr:deleted":          eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_CLOSED,
	}[key]
	var compareURL string
	if len(pr.Links.Self) > 0 {
		compareURL = pr.Links.Self[0].Href
	}
	return []*eventsv1.Change{{
		Kind:              kind,
		Repository:        repository,
		CloneUrl:          firstNonEmpty(pr.FromRef.Repository.cloneURL(), pr.ToRef.Repository.cloneURL()),
		Ref:               branchRef(pr.FromRef.ID),
		Before:            p.PreviousFromHash,
		After:             pr.FromRef.LatestCommit,
		Sender:            firstNonEmpty(p.Actor.Name, p.Actor.Slug),
		CompareUrl:        compareURL,
		PullRequestNumber: pr.ID,
		PullRequestTitle:  pr.Title,
		BaseRef:           branchRef(pr.ToRef.ID),
		BaseSha:           pr.ToRef.LatestCommit,
	}}, nil
}
