package forgestatus

import (
	"context"
	"net/http"
	"net/url"
)

// GitHub's description limit: longer ones are refused with 422
// "description is too long (maximum is 140 characters)".
const githubMaxDescription = 140

type githubClient struct{ base }

// NewGitHub makes a GitHub (or GitHub Enterprise Server) client. Config.Repo
// is "owner/repo"; the API URL defaults to https://api.github.com.
func NewGitHub(cfg Config) (Client, error) {
	b, err := newBase(GitHub, cfg, true)
	if err != nil {
		return nil, err
	}
	return &githubClient{b}, nil
}

type githubStatus struct {
	State       string `json:"state"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description,omitempty"`
	Context     string `json:"context"`
}

// githubState maps onto GitHub's error|failure|pending|success.
func githubState(s State) string {
	switch s {
	case Pending, Running:
		return "pending"
	case Success:
		return "success"
	case Failure:
		return "failure"
	}
	return "error" // Error, Canceled
}

// SetStatus posts to POST /repos/{owner}/{repo}/statuses/{sha}.
func (c *githubClient) SetStatus(ctx context.Context, st Status) error {
	if err := c.check(st); err != nil {
		return err
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+c.token)
	h.Set("Accept", "application/vnd.github+json")
	h.Set("X-GitHub-Api-Version", "2022-11-28")
	return c.post(ctx, c.ownerRepoPath()+"/statuses/"+url.PathEscape(st.SHA), h, githubStatus{
		State: githubState(st.State), TargetURL: st.TargetURL,
		Description: clip(st.Description, githubMaxDescription), Context: st.Context,
	})
}
