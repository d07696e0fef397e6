package builds

// Mercurial repositories: a mirror per repository (hg clone/pull), the
// pipeline file read with hg cat, versions from hg tags (version.ComputeHg),
// and builds from pushes restricted to public changesets when asked.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/conduit"
	"github.com/shiploop/shiploop/pkg/vcsarg"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/pipeline"
	"github.com/shiploop/shiploop/services/builds/version"
)

// VCS kinds a repository can be.
const (
	VCSGit = "git"
	VCSHg  = "hg"
)

// vcsSettings are a repository's VCS and Harbormaster settings.
type vcsSettings struct {
	vcs                                            string
	publicOnly                                     bool
	conduitURL, conduitToken, callsign, stagingURL string
}

func (s *Service) vcsSettings(ctx context.Context, repo string) (vcsSettings, error) {
	return readVCSSettings(ctx, s.db, repo)
}

func readVCSSettings(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, repo string) (vcsSettings, error) {
	var v vcsSettings
	var public int
	err := q.QueryRowContext(ctx, `SELECT vcs, public_only, conduit_url, conduit_token, callsign, staging_url FROM repositories WHERE name = $1`, repo).
		Scan(&v.vcs, &public, &v.conduitURL, &v.conduitToken, &v.callsign, &v.stagingURL)
	if errors.Is(err, sql.ErrNoRows) {
		return vcsSettings{vcs: VCSGit}, nil
	}
	v.publicOnly = public != 0
	return v, err
}

// mergeVCS applies a RegisterRepository request to the stored settings and
// checks them; the Conduit token is checked, never echoed.
func mergeVCS(old vcsSettings, req *buildsv1.RegisterRepositoryRequest) (vcsSettings, error) {
	v := old
	if v.vcs == "" {
		v.vcs = VCSGit
	}
	switch k := strings.ToLower(strings.TrimSpace(req.GetVcs())); k {
	case "":
	case VCSGit, VCSHg:
		v.vcs = k
	default:
		return old, invalid("vcs", fmt.Sprintf("%q: want git or hg", k))
	}
	if req.PublicOnly != nil {
		v.publicOnly = req.GetPublicOnly()
	}
	if v.publicOnly && v.vcs != VCSHg {
		return old, invalid("public_only", "phases are a Mercurial notion: set vcs to hg")
	}
	if c := strings.TrimSpace(req.GetCallsign()); c != "" {
		v.callsign = c
	}
	if u := strings.TrimSpace(req.GetStagingUrl()); u != "" {
		v.stagingURL = u
	}
	switch u := strings.TrimSpace(req.GetConduitUrl()); u {
	case "":
	case forgeNone:
		v.conduitURL, v.conduitToken = "", ""
		return v, nil
	default:
		base, err := conduit.BaseURL(u)
		if err != nil {
			return old, invalid("conduit_url", err.Error())
		}
		v.conduitURL = base
	}
	if t := strings.TrimSpace(req.GetConduitToken()); t != "" {
		if err := conduit.CheckToken(t); err != nil {
			return old, invalid("conduit_token", err.Error())
		}
		v.conduitToken = t
	}
	if v.conduitURL != "" && v.conduitToken == "" {
		return old, invalid("conduit_token", "required with conduit_url: an API token of a bot user allowed to send Harbormaster messages")
	}
	return v, nil
}

// checkVCSRequest validates a RegisterRepository request's VCS and
// Harbormaster fields before anything is written.
func (s *Service) checkVCSRequest(ctx context.Context, name string, req *buildsv1.RegisterRepositoryRequest) error {
	old, err := s.vcsSettings(ctx, name)
	if err != nil {
		return status.Errorf(codes.Unavailable, "reading %s: %v", name, err)
	}
	v, err := mergeVCS(old, req)
	if err != nil {
		return err
	}
	// Clone and staging URLs reach git and hg as arguments: only the
	// transports the operator allows, never an option or a remote helper.
	if err := s.mirrors.transports.CloneURL(v.vcs, req.GetCloneUrl()); err != nil {
		return invalid("clone_url", err.Error())
	}
	if v.stagingURL != "" {
		if err := s.mirrors.transports.CloneURL(v.vcs, v.stagingURL); err != nil {
			return invalid("staging_url", err.Error())
		}
	}
	return nil
}

// applyVCSRequest stores a RegisterRepository request's VCS and
// Harbormaster fields and describes them on repo.
func (s *Service) applyVCSRequest(ctx context.Context, req *buildsv1.RegisterRepositoryRequest, repo *buildsv1.Repository) error {
	var v vcsSettings
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		old, err := readVCSSettings(ctx, tx, repo.Name)
		if err != nil {
			return err
		}
		if v, err = mergeVCS(old, req); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE repositories SET vcs = $1, public_only = $2, conduit_url = $3, conduit_token = $4, callsign = $5, staging_url = $6 WHERE name = $7`,
			v.vcs, boolInt(v.publicOnly), v.conduitURL, v.conduitToken, v.callsign, v.stagingURL, repo.Name)
		return err
	})
	if err != nil {
		return err
	}
	repo.Vcs, repo.PublicOnly, repo.ConduitUrl, repo.ConduitTokenSet, repo.Callsign, repo.StagingUrl =
		v.vcs, v.publicOnly, v.conduitURL, v.conduitToken != "", v.callsign, v.stagingURL
	return nil
}

// prepareVCS runs before the git path of prepareChange: it builds hg
// changes entirely (done = true), and for a git diff from Harbormaster
// fetches the staging ref so the git path finds the commit.
func (s *Service) prepareVCS(ctx context.Context, ch *eventsv1.Change, p *preparedChange) (done bool, err error) {
	vs, err := s.vcsSettings(ctx, ch.Repository)
	if err != nil {
		return true, err // the database misbehaves: retry
	}
	if vs.vcs != VCSHg {
		if ch.Forge == ForgeHarbormaster && ch.DiffId != 0 && ch.After == "" {
			if err := s.prepareGitDiff(ctx, ch); err != nil {
				p.problem = err.Error()
				return true, nil
			}
			p.commit, p.jobCloneURL = ch.After, ch.StagingUrl
		}
		return false, nil
	}
	p.vcs = VCSHg
	return true, s.prepareHg(ctx, ch, vs, p)
}

// prepareHg is prepareChange for a Mercurial repository.
func (s *Service) prepareHg(ctx context.Context, ch *eventsv1.Change, vs vcsSettings, p *preparedChange) error {
	dir, err := s.mirrors.ensureHg(ctx, ch.Repository, ch.CloneUrl, ch.After)
	if err != nil {
		p.problem = fmt.Sprintf("cannot pull %s: %v", ch.Repository, err)
		return nil
	}
	if ch.Forge == ForgeHarbormaster && ch.DiffId != 0 && ch.After == "" {
		node, err := s.mirrors.pullHgName(ctx, ch.Repository, dir, ch.StagingUrl, stagingRef(ch.DiffId))
		if err != nil {
			p.problem = fmt.Sprintf("diff %d is not in the staging area %s (push its changeset there with bookmark %s): %v", ch.DiffId, ch.StagingUrl, stagingRef(ch.DiffId), err)
			return nil
		}
		p.commit, p.jobCloneURL = node, ch.StagingUrl
	}
	if p.commit == "" && ch.Tag != "" {
		if p.commit, err = hgNode(ctx, dir, ch.Tag); err != nil {
			p.problem = fmt.Sprintf("tag %s: %v", ch.Tag, err)
			return nil
		}
	}
	if p.commit == "" {
		p.problem = "the change names no changeset"
		return nil
	}
	if p.commit, err = hgNode(ctx, dir, p.commit); err != nil {
		p.problem = fmt.Sprintf("changeset %s: %v", short(p.commit), err)
		return nil
	}
	if vs.publicOnly && ch.Forge != ForgeHarbormaster && ch.Forge != "manual" {
		phase, err := hg(ctx, dir, "log", "-r", p.commit, "-T", "{phase}")
		if err != nil {
			return err
		}
		if phase != "public" {
			p.skipReason = fmt.Sprintf("changeset %s is %s: %s builds only public changesets from pushes (drafts build through Harbormaster)", p.commit[:12], phase, ch.Repository)
			return nil
		}
	}
	data, err := hgCat(ctx, dir, p.commit, ConfigFile)
	if errors.Is(err, errNoFile) {
		p.problem = fmt.Sprintf("%s: not found in changeset %s (add one to tell shiploop what to build)", ConfigFile, p.commit[:12])
		return nil
	}
	if err != nil {
		return err
	}
	p.raw = data
	cfg, err := pipeline.Parse(ConfigFile, data)
	if err != nil {
		p.problem = err.Error()
		return nil
	}
	if p.version, err = version.ComputeHg(ctx, dir, p.commit, ch.Tag); err != nil {
		p.problem = fmt.Sprintf("computing the version: %v", err)
		return nil
	}
	wctx := pipeline.Context{Event: p.trigger, Branch: ch.Branch, Tag: ch.Tag, ChangedPaths: changedPaths(ch)}
	p.steps = cfg.Selected(wctx)
	p.cfg = cfg
	return nil
}

// ensureHg makes sure the hg mirror of repo has node, pulling from
// cloneURL when it does not, and returns its directory.
func (m *mirrors) ensureHg(ctx context.Context, repo, cloneURL, node string) (string, error) {
	if err := m.transports.CloneURL(VCSHg, cloneURL); err != nil {
		return "", err
	}
	if node != "" {
		if err := vcsarg.CommitOrPrefix(node); err != nil {
			return "", err
		}
	}
	defer m.lock(repo)()
	dir := filepath.Join(m.dir, strings.NewReplacer("/", "__", "..", "_").Replace(repo)+".hg")
	if _, err := os.Stat(filepath.Join(dir, ".hg")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		if _, err := hg(ctx, dir, "init"); err != nil {
			return "", err
		}
	}
	if node != "" {
		if _, err := hgNode(ctx, dir, node); err == nil {
			return dir, nil
		}
	}
	if _, err := hg(ctx, dir, hgPullArgs(cloneURL, "")...); err != nil {
		return "", fmt.Errorf("pulling %s: %w", vcsarg.Redact(cloneURL), err)
	}
	if node != "" {
		if _, err := hgNode(ctx, dir, node); err != nil {
			return "", fmt.Errorf("changeset %s is not in %s", node, vcsarg.Redact(cloneURL))
		}
	}
	return dir, nil
}

// pullHgName pulls the changeset a name (bookmark, tag, branch) has in
// source into the mirror and returns its node.
func (m *mirrors) pullHgName(ctx context.Context, repo, dir, source, name string) (string, error) {
	if err := m.transports.CloneURL(VCSHg, source); err != nil {
		return "", fmt.Errorf("staging URL: %w", err)
	}
	if err := vcsarg.HgName(name); err != nil {
		return "", err
	}
	defer m.lock(repo)()
	out, err := hg(ctx, dir, "identify", "--debug", "--id", "-r", name, "--", source)
	if err != nil {
		return "", err
	}
	node := strings.TrimSuffix(strings.TrimSpace(out), "+")
	if !hexRe.MatchString(node) {
		return "", fmt.Errorf("hg identify answered %q", out)
	}
	if _, err := hg(ctx, dir, hgPullArgs(source, node)...); err != nil {
		return "", err
	}
	return node, nil
}

// hgPullArgs pulls source into a mirror, only node and its ancestors when
// node is set. hg reads every argument after "--" as a positional one.
func hgPullArgs(source, node string) []string {
	if node != "" {
		return []string{"pull", "--quiet", "-r", node, "--", source}
	}
	return []string{"pull", "--quiet", "--", source}
}

// hgNode resolves a revision (node, prefix, tag, bookmark) to a full node.
func hgNode(ctx context.Context, dir, rev string) (string, error) {
	if err := vcsarg.HgName(rev); err != nil {
		return "", fmt.Errorf("revision: %w", err)
	}
	out, err := hg(ctx, dir, "log", "-r", rev, "-T", "{node}\n")
	if err != nil {
		return "", fmt.Errorf("revision %q not found", rev)
	}
	node := strings.TrimSpace(out)
	if strings.Contains(node, "\n") || !hexRe.MatchString(node) {
		return "", fmt.Errorf("revision %q is not one changeset", rev)
	}
	return node, nil
}

func hgCat(ctx context.Context, dir, node, path string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "hg", "--cwd", dir, "cat", "-r", node, "--", "path:"+path)
	cmd.Env = hgEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "no such file") {
			return nil, errNoFile
		}
		return nil, fmt.Errorf("hg cat -r %s %s: %v: %s", node, path, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func hg(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "hg", append([]string{"--cwd", dir, "--noninteractive"}, args...)...)
	cmd.Env = hgEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hg %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// hgEnv keeps hg's output stable (HGPLAIN) whatever the user's settings.
func hgEnv() []string {
	return append(os.Environ(), "HGPLAIN=1", "LC_ALL=C")
}

// triggerHg is TriggerBuild for a Mercurial repository: ref is a branch,
// bookmark, tag or changeset (default: the default branch's head).
func (s *Service) triggerHg(ctx context.Context, repo repoRow, ref string) (*buildsv1.TriggerBuildResponse, error) {
	dir, err := s.mirrors.ensureHg(ctx, repo.name, repo.cloneURL, "")
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "pulling %s: %v", repo.name, err)
	}
	if ref == "" {
		ref = repo.defaultBranch
	}
	name := strings.TrimPrefix(strings.TrimPrefix(ref, "refs/heads/"), "refs/tags/")
	node, err := hgNode(ctx, dir, name)
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "ref %q not found in %s: %v", ref, repo.name, err)
	}
	ch := &eventsv1.Change{
		Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "manual", Repository: repo.name,
		CloneUrl: repo.cloneURL, DefaultBranch: repo.defaultBranch, After: node,
	}
	tags, _ := hg(ctx, dir, "log", "-r", node, "-T", "{join(tags, '\\n')}")
	isTag := strings.HasPrefix(ref, "refs/tags/")
	for _, t := range strings.Split(tags, "\n") {
		isTag = isTag || (t == name && t != "tip")
	}
	if isTag {
		ch.Kind, ch.Tag, ch.Ref = eventsv1.ChangeKind_CHANGE_KIND_TAG, name, "refs/tags/"+name
	} else {
		branch, _ := hg(ctx, dir, "log", "-r", node, "-T", "{branch}")
		ch.Branch, ch.Ref = branch, "refs/heads/"+branch
	}
	reply, err := s.acceptChange(ctx, ch)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "recording the change: %v", err)
	}
	return &buildsv1.TriggerBuildResponse{EventId: reply.EventID, Commit: node, Ref: ch.Ref}, nil
}
