package forgestatus

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// GitLab keeps descriptions in a 255-character column.
const gitlabMaxDescription = 255

type gitlabClient struct{ base }

// NewGitLab makes a GitLab client. Config.Repo is the numeric project id or
// the project's path ("group/sub/project", sent URL-encoded); the API URL
// defaults to https://gitlab.com/api/v4.
func NewGitLab(cfg Config) (Client, error) {
	b, err := newBase(GitLab, cfg, false)
	if err != nil {
		return nil, err
	}
	return &gitlabClient{b}, nil
}

type gitlabStatus struct {
	State       string `json:"state"`
	Ref         string `json:"ref,omitempty"`
	Name        string `json:"name"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description,omitempty"`
}

// gitlabState maps onto GitLab's pending|running|success|failed|canceled.
func gitlabState(s State) string {
	switch s {
	case Pending:
		return "pending"
	case Running:
		return "running"
	case Success:
		return "success"
	case Canceled:
		return "canceled"
	}
	return "failed" // Failure, Error
}

// gitlabRef is the branch or tag name GitLab's ref field wants; other refs
// (a merge request's head) are left out.
func gitlabRef(ref string) string {
	if r, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		return r
	}
	if r, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		return r
	}
	if strings.HasPrefix(ref, "refs/") {
		return ""
	}
	return ref
}

// SetStatus posts to POST /projects/:id/statuses/:sha with PRIVATE-TOKEN.
// GitLab refuses a transition its state machine does not allow (the same
// state twice, running after success) with 400; that is permanent.
func (c *gitlabClient) SetStatus(ctx context.Context, st Status) error {
	if err := c.check(st); err != nil {
		return err
	}
	h := http.Header{}
	h.Set("PRIVATE-TOKEN", c.token)
	return c.post(ctx, "/projects/"+url.PathEscape(c.repo)+"/statuses/"+url.PathEscape(st.SHA), h, gitlabStatus{
		State: gitlabState(st.State), Ref: gitlabRef(st.Ref), Name: st.Context, TargetURL: st.TargetURL,
		Description: clip(st.Description, gitlabMaxDescription),
	})
}
