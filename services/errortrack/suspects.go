package errortrack

import (
	"context"
	"encoding/json"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// changesDurable follows pushes: the commits each brought, with the files
// they added, modified and removed (as GitHub, GitLab and Gitea webhooks
// list them), so that suspect commits need no upload from the app.
const changesDurable = "errortrack-changes"

// maxPushWalk bounds how many pushes back a release's commits are looked
// for: the whole way to the previous deploy's commit, or this many pushes
// for a first deploy (no previous commit to stop at).
const (
	maxPushWalk      = 200
	maxFirstPushWalk = 20
	maxSuspects      = 10
)

// handleChange records the commits of a push.
func (s *Service) handleChange(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	c, ok := ev.Data.(*eventsv1.Change)
	if !ok || c.GetRepository() == "" || c.GetAfter() == "" || strings.Trim(c.GetAfter(), "0") == "" {
		return nil
	}
	var cs []deployCommit
	for _, cm := range c.GetCommits() {
		author := cm.GetAuthorName()
		if cm.GetAuthorEmail() != "" {
			author = strings.TrimSpace(author + " <" + cm.GetAuthorEmail() + ">")
		}
		var files []string
		files = append(files, cm.GetAdded()...)
		files = append(files, cm.GetModified()...)
		files = append(files, cm.GetRemoved()...)
		cs = append(cs, deployCommit{SHA: cm.GetSha(), Message: cm.GetMessage(), Author: author, Files: files})
	}
	js, _ := json.Marshal(cs)
	if cs == nil {
		js = []byte("[]")
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO pushes (repository, after_sha, before_sha, commits, received_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (repository, after_sha) DO NOTHING`, c.GetRepository(), c.GetAfter(), c.GetBefore(), string(js), time.Now().UnixNano())
	return err
}

// deployCommits is what a deploy brought: the commits it was recorded with
// (RecordDeploy, or sentry-cli's set-commits), else the commits of the
// pushes between the previous deploy's commit to the same environment and
// its own, newest first.
func deployCommits(ctx context.Context, q queryer, deployID string) ([]deployCommit, string, error) {
	var projectID, at int64
	var release, env, commitsJSON, sha, repo string
	err := q.QueryRowContext(ctx, `SELECT d.project_id, d.release, d.environment, d.deployed_at, d.commits, d.commit_sha, p.repository FROM deploys d JOIN projects p ON p.id = d.project_id WHERE d.id = $1`, deployID).
		Scan(&projectID, &release, &env, &at, &commitsJSON, &sha, &repo)
	if err != nil {
		return nil, "", err
	}
	var cs []deployCommit
	_ = json.Unmarshal([]byte(commitsJSON), &cs)
	if len(cs) > 0 || sha == "" || repo == "" {
		return cs, release, nil
	}
	var prev string
	_ = q.QueryRowContext(ctx, `SELECT commit_sha FROM deploys WHERE project_id = $1 AND environment = $2 AND deployed_at < $3 AND release <> $4 AND commit_sha <> ''
		ORDER BY deployed_at DESC LIMIT 1`, projectID, env, at, release).Scan(&prev)
	limit := maxPushWalk
	if prev == "" {
		limit = maxFirstPushWalk
	}
	seen := map[string]bool{}
	for cur := sha; cur != "" && cur != prev && !seen[cur] && limit > 0; limit-- {
		seen[cur] = true
		var before, js string
		if err := q.QueryRowContext(ctx, `SELECT before_sha, commits FROM pushes WHERE repository = $1 AND after_sha = $2`, repo, cur).Scan(&before, &js); err != nil {
			break
		}
		var pc []deployCommit
		_ = json.Unmarshal([]byte(js), &pc)
		// A push lists its commits oldest first; cs is newest first.
		for i := len(pc) - 1; i >= 0; i-- {
			cs = append(cs, pc[i])
		}
		cur = before
	}
	return cs, release, nil
}

// rankSuspects names the commits that touched a file of the in-app
// frames. files are the frames' paths as the issue keeps them (outermost
// first, the raised exception last); the innermost frame weighs most. A
// frame path matches a commit's path when they are equal or one ends with
// "/" and the other (frames carry absolute or package-relative paths,
// commits repository-relative ones). Ties go to the newer commit.
func rankSuspects(commits []deployCommit, files []string, release string) []*errortrackv1.SuspectCommit {
	var out []*errortrackv1.SuspectCommit
	for i, c := range commits {
		sc := &errortrackv1.SuspectCommit{Sha: c.SHA, Message: c.Message, Author: c.Author, Files: c.Files, Release: release}
		for _, cf := range c.Files {
			cf = strings.TrimPrefix(path.Clean(strings.TrimPrefix(cf, "./")), "/")
			for j, ff := range files {
				if pathsMatch(ff, cf) {
					sc.Score += int32(j + 1) // later in files: nearer the raise
					sc.MatchedFiles = append(sc.MatchedFiles, cf)
					break
				}
			}
		}
		if sc.Score > 0 {
			sc.Score = sc.Score*1000 + int32(len(commits)-i) // newer first among equals
			out = append(out, sc)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Score > out[b].Score })
	if len(out) > maxSuspects {
		out = out[:maxSuspects]
	}
	for _, sc := range out {
		sc.Score /= 1000
	}
	return out
}

func pathsMatch(frame, changed string) bool {
	frame = strings.ReplaceAll(frame, `\`, "/")
	frame = strings.TrimPrefix(frame, "./")
	if changed == "" || frame == "" {
		return false
	}
	// webpack:///./src/app.js, app:///src/app.js, file:///srv/app/x.py
	if i := strings.Index(frame, "://"); i >= 0 {
		frame = strings.TrimLeft(frame[i+3:], "./")
	}
	return frame == changed || strings.HasSuffix(frame, "/"+changed) || (strings.Contains(frame, "/") && strings.HasSuffix(changed, "/"+frame))
}

// releaseDeploy is the deploy of release to environment at or before ts,
// else its latest (an SDK clock behind the deploy's), "" for none.
func releaseDeploy(ctx context.Context, q queryer, projectID int64, release, environment string, ts int64) string {
	if release == "" {
		return ""
	}
	var id string
	_ = q.QueryRowContext(ctx, `SELECT id FROM deploys WHERE project_id = $1 AND release = $2 AND environment = $3
		ORDER BY CASE WHEN deployed_at <= $4 THEN 0 ELSE 1 END, deployed_at DESC LIMIT 1`, projectID, release, environment, ts).Scan(&id)
	return id
}

// suspectsFor ranks the commits of a deploy against an issue's files.
func suspectsFor(ctx context.Context, q queryer, deployID, filesJSON string) []*errortrackv1.SuspectCommit {
	if deployID == "" {
		return nil
	}
	var files []string
	if json.Unmarshal([]byte(filesJSON), &files) != nil || len(files) == 0 {
		return nil
	}
	cs, release, err := deployCommits(ctx, q, deployID)
	if err != nil {
		return nil
	}
	return rankSuspects(cs, files, release)
}
