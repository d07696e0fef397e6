package forgestatus

import (
	"context"
	"net/http"
	"net/url"
)

// Gitea stores descriptions as text; this keeps them readable in its UI.
const giteaMaxDescription = 255

type giteaClient struct{ base }

// NewGitea makes a Gitea client. Config.Repo is "owner/repo"; the API URL
// (https://HOST/api/v1) is required.
func NewGitea(cfg Config) (Client, error) { return newGitea(Gitea, cfg) }

// NewForgejo makes a Forgejo client: Forgejo serves Gitea's API.
func NewForgejo(cfg Config) (Client, error) { return newGitea(Forgejo, cfg) }

func newGitea(forge string, cfg Config) (Client, error) {
	b, err := newBase(forge, cfg, true)
	if err != nil {
		return nil, err
	}
	return &giteaClient{b}, nil
}

type giteaStatus struct {
	State       string `json:"state"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description,omitempty"`
	Context     string `json:"context"`
}

// giteaState maps onto Gitea's pending|success|error|failure|warning
// (running shows as pending; a canceled build as failure, as Woodpecker
// reports a killed one).
func giteaState(s State) string {
	switch s {
	case Pending, Running:
		return "pending"
	case Success:
		return "success"
	case Error:
		return "error"
	}
	return "failure" // Failure, Canceled
}

// SetStatus posts to POST /repos/{owner}/{repo}/statuses/{sha} with
// "Authorization: token T".
func (c *giteaClient) SetStatus(ctx context.Context, st Status) error {
	if err := c.check(st); err != nil {
		return err
	}
	h := http.Header{}
	h.Set("Authorization", "token "+c.token)
	return c.post(ctx, c.ownerRepoPath()+"/statuses/"+url.PathEscape(st.SHA), h, giteaStatus{
		State: giteaState(st.State), TargetURL: st.TargetURL,
		Description: clip(st.Description, giteaMaxDescription), Context: st.Context,
	})
}
