package forge

// GitLab deliveries: Push Hook, Tag Push Hook and Merge Request Hook.

import (
	"net/http"
	"strings"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

type gitlabProject struct {
	PathWithNamespace string `json:"path_with_namespace"`
	GitHTTPURL        string `json:"git_http_url"`
	WebURL            string `json:"web_url"`
	DefaultBranch     string `json:"default_branch"`
}

type gitlabPush struct {
	Ref          string        `json:"ref"`
	Before       string        `json:"before"`
	After        string        `json:"after"`
	CheckoutSHA  string        `json:"checkout_sha"`
	UserUsername string        `json:"user_username"`
	UserName     string        `json:"user_name"`
	Project      gitlabProject `json:"project"`
	Repository   struct {
		GitHTTPURL string `json:"git_http_url"`
	} `json:"repository"`
	Commits []jsonCommit `json:"commits"`
}

type gitlabMergeRequest struct {
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	Project          gitlabProject `json:"project"`
	ObjectAttributes struct {
		Action       string `json:"action"`
		IID          int64  `json:"iid"`
		Title        string `json:"title"`
		URL          string `json:"url"`
		OldRev       string `json:"oldrev"`
		SourceBranch string `json:"source_branch"`
		TargetBranch string `json:"target_branch"`
		LastCommit   struct {
			ID string `json:"id"`
		} `json:"last_commit"`
		Source gitlabProject `json:"source"`
		Target gitlabProject `json:"target"`
	} `json:"object_attributes"`
}

// gitlabHookKinds maps X-Gitlab-Event to object_kind for the hooks that can
// be changes.
var gitlabHookKinds = map[string]string{
	"Push Hook":          "push",
	"Tag Push Hook":      "tag_push",
	"Merge Request Hook": "merge_request",
}

func parseGitLab(header http.Header, body []byte) ([]*eventsv1.Change, error) {
	event := header.Get("X-Gitlab-Event")
	kind, ok := gitlabHookKinds[event]
	if !ok && event != "System Hook" && strings.HasSuffix(event, " Hook") {
		if err := validObject("gitlab payload", body); err != nil {
			return nil, err
		}
		return nil, ignored("gitlab %q is not a change", event)
	}
	if !ok {
		// System hooks, and the "Test" button of some GitLab versions that
		// sent "Push Event": route on the body.
		var head struct {
			ObjectKind string `json:"object_kind"`
		}
		if err := decode("gitlab payload", body, &head); err != nil {
			return nil, err
		}
		if head.ObjectKind == "" {
			if event == "" {
				return nil, badRequest("gitlab delivery: missing X-Gitlab-Event header and object_kind")
			}
			return nil, badRequest("gitlab delivery: unknown X-Gitlab-Event %q and no object_kind", event)
		}
		kind = head.ObjectKind
	}
	switch kind {
	case "push", "tag_push":
		var p gitlabPush
		if err := decode("gitlab "+kind+" payload", body, &p); err != nil {
			return nil, err
		}
		return gitlabPushChange(kind, &p)
	case "merge_request":
		var p gitlabMergeRequest
		if err := decode("gitlab merge_request payload", body, &p); err != nil {
			return nil, err
		}
		return gitlabMergeRequestChange(&p)
	}
	return nil, ignored("gitlab %q event is not a change", kind)
}

func gitlabPushChange(kind string, p *gitlabPush) ([]*eventsv1.Change, error) {
	what := "gitlab " + kind + " payload"
	switch {
	case p.Project.PathWithNamespace == "":
		return nil, missing(what, "project.path_with_namespace")
	case p.Ref == "":
		return nil, missing(what, "ref")
	case p.After == "":
		return nil, missing(what, "after")
	}
	deleted := isZeroSHA(p.After)
	c := &eventsv1.Change{
		Kind:          refKind(p.Ref, deleted),
		Repository:    p.Project.PathWithNamespace,
		CloneUrl:      firstNonEmpty(p.Project.GitHTTPURL, p.Repository.GitHTTPURL),
		DefaultBranch: p.Project.DefaultBranch,
		Ref:           p.Ref,
		Before:        p.Before,
		After:         p.After,
		Commits:       commits(p.Commits, false, jsonCommit.proto),
		Sender:        firstNonEmpty(p.UserUsername, p.UserName),
	}
	switch c.Kind {
	case eventsv1.ChangeKind_CHANGE_KIND_UNSPECIFIED:
		return nil, ignored("gitlab %s to %q is neither a branch nor a tag", kind, p.Ref)
	case eventsv1.ChangeKind_CHANGE_KIND_TAG:
		// For an annotated tag "after" is the tag object and checkout_sha
		// the commit it points to.
		c.After = firstNonEmpty(p.CheckoutSHA, p.After)
	}
	if p.Project.WebURL != "" && p.Before != "" && !isZeroSHA(p.Before) && !deleted {
		c.CompareUrl = strings.TrimSuffix(p.Project.WebURL, "/") + "/-/compare/" + p.Before + "..." + p.After
	}
	return []*eventsv1.Change{c}, nil
}

func gitlabMergeRequestChange(p *gitlabMergeRequest) ([]*eventsv1.Change, error) {
	const what = "gitlab merge_request payload"
	a := &p.ObjectAttributes
	var kind eventsv1.ChangeKind
	switch a.Action {
	case "open", "reopen":
		kind = eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED
	case "update":
		// oldrev is only sent when the update pushed commits; without it
		// the title, labels or description changed.
		if a.OldRev == "" {
			return nil, ignored("gitlab merge request update without new commits")
		}
		kind = eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED
	case "merge":
		kind = eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_MERGED
	case "close":
		kind = eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_CLOSED
	case "":
		return nil, missing(what, "object_attributes.action")
	default:
		return nil, ignored("gitlab merge request action %q is not a code change", a.Action)
	}
	repository := firstNonEmpty(p.Project.PathWithNamespace, a.Target.PathWithNamespace)
	switch {
	case repository == "":
		return nil, missing(what, "project.path_with_namespace")
	case a.IID <= 0:
		return nil, missing(what, "object_attributes.iid")
	case a.SourceBranch == "":
		return nil, missing(what, "object_attributes.source_branch")
	case a.LastCommit.ID == "":
		return nil, missing(what, "object_attributes.last_commit.id")
	}
	return []*eventsv1.Change{{
		Kind:              kind,
		Repository:        repository,
		CloneUrl:          firstNonEmpty(a.Source.GitHTTPURL, p.Project.GitHTTPURL, a.Target.GitHTTPURL),
		DefaultBranch:     firstNonEmpty(p.Project.DefaultBranch, a.Target.DefaultBranch),
		Ref:               "refs/heads/" + a.SourceBranch,
		Before:            a.OldRev,
		After:             a.LastCommit.ID,
		Sender:            p.User.Username,
		CompareUrl:        a.URL,
		PullRequestNumber: a.IID,
		PullRequestTitle:  a.Title,
		BaseRef:           branchRef(a.TargetBranch),
	}}, nil
}
