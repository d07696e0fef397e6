package errortrack

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// compareReleases orders two releases of a project as seen from an
// environment: first by when shiploop deployed them there (or anywhere,
// when not there), then by SemVer, then by when each was first seen. It
// returns -1, 0 or +1 (a older, equal, newer than b).
func compareReleases(ctx context.Context, q queryer, projectID int64, environment, a, b string) (int, error) {
	if a == b {
		return 0, nil
	}
	for _, env := range []string{environment, ""} {
		da, err := firstDeploy(ctx, q, projectID, env, a)
		if err != nil {
			return 0, err
		}
		db, err := firstDeploy(ctx, q, projectID, env, b)
		if err != nil {
			return 0, err
		}
		if da != 0 && db != 0 && da != db {
			return sign(da - db), nil
		}
	}
	if va, ok := parseSemver(a); ok {
		if vb, ok := parseSemver(b); ok {
			if c := va.compare(vb); c != 0 {
				return c, nil
			}
		}
	}
	fa, err := releaseFirstSeen(ctx, q, projectID, a)
	if err != nil {
		return 0, err
	}
	fb, err := releaseFirstSeen(ctx, q, projectID, b)
	if err != nil {
		return 0, err
	}
	if fa != fb {
		return sign(fa - fb), nil
	}
	return strings.Compare(a, b), nil
}

func sign(n int64) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func firstDeploy(ctx context.Context, q queryer, projectID int64, env, release string) (int64, error) {
	var t sql.NullInt64
	var err error
	if env == "" {
		err = q.QueryRowContext(ctx, `SELECT MIN(deployed_at) FROM deploys WHERE project_id = $1 AND release = $2`, projectID, release).Scan(&t)
	} else {
		err = q.QueryRowContext(ctx, `SELECT MIN(deployed_at) FROM deploys WHERE project_id = $1 AND release = $2 AND environment = $3`, projectID, release, env).Scan(&t)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return t.Int64, err
}

func releaseFirstSeen(ctx context.Context, q queryer, projectID int64, release string) (int64, error) {
	var t int64
	err := q.QueryRowContext(ctx, `SELECT first_seen FROM releases WHERE project_id = $1 AND version = $2`, projectID, release).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return t, err
}

// semver is a parsed SemVer 2.0 version.
type semver struct {
	major, minor, patch int64
	pre                 []string
}

// parseSemver reads "1.2.3", "v1.2", "myapp@1.2.3-rc.1+build" (a package
// prefix "name@" and build metadata are ignored).
func parseSemver(s string) (semver, bool) {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	var v semver
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) == 0 || len(parts) > 3 {
		return v, false
	}
	nums := make([]int64, 3)
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return v, false
		}
		nums[i] = n
	}
	v.major, v.minor, v.patch = nums[0], nums[1], nums[2]
	if hasPre {
		if pre == "" {
			return v, false
		}
		v.pre = strings.Split(pre, ".")
	}
	return v, true
}

func (a semver) compare(b semver) int {
	for _, d := range []int64{a.major - b.major, a.minor - b.minor, a.patch - b.patch} {
		if d != 0 {
			return sign(d)
		}
	}
	switch {
	case len(a.pre) == 0 && len(b.pre) == 0:
		return 0
	case len(a.pre) == 0:
		return 1
	case len(b.pre) == 0:
		return -1
	}
	for i := 0; i < len(a.pre) && i < len(b.pre); i++ {
		x, y := a.pre[i], b.pre[i]
		nx, ex := strconv.ParseInt(x, 10, 64)
		ny, ey := strconv.ParseInt(y, 10, 64)
		switch {
		case ex == nil && ey == nil:
			if nx != ny {
				return sign(nx - ny)
			}
		case ex == nil:
			return -1
		case ey == nil:
			return 1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return sign(int64(len(a.pre) - len(b.pre)))
}

func issueRef(p project, id int64, title, culprit, level string, firstSeen interface{ UnixNano() int64 }) *errortrackv1.IssueRef {
	return &errortrackv1.IssueRef{IssueId: id, ProjectId: p.id, Project: p.name, Title: title, Culprit: culprit, Level: level,
		FirstSeen: timestamppb.New(timeFromNanos(firstSeen.UnixNano()))}
}

func timeFromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
