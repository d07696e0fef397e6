package errortrack

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shiploop/shiploop/services/errortrack/event"
)

var errNotFound = errors.New("not found")

// project is a project row.
type project struct {
	id            int64
	name          string
	ratePerMinute int64
	quotaPerHour  int64
	groupingVer   int
	repository    string
	createdAt     int64
}

// key is a DSN key row.
type key struct {
	public, secret string
	projectID      int64
	createdAt      int64
	revokedAt      int64
}

type queryer interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

const projectColumns = `id, name, rate_limit_per_minute, quota_per_hour, grouping_version, repository, created_at`

func scanProject(sc interface{ Scan(...any) error }) (project, error) {
	var p project
	err := sc.Scan(&p.id, &p.name, &p.ratePerMinute, &p.quotaPerHour, &p.groupingVer, &p.repository, &p.createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		err = errNotFound
	}
	return p, err
}

func (s *Service) loadProject(ctx context.Context, id int64) (project, error) {
	return scanProject(s.db.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE id = $1`, id))
}

// findProject finds a project by numeric id or by name.
func findProject(ctx context.Context, q queryer, ref string) (project, error) {
	ref = strings.TrimSpace(ref)
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		p, err := scanProject(q.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE id = $1`, id))
		if !errors.Is(err, errNotFound) {
			return p, err
		}
	}
	return scanProject(q.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE name = $1`, ref))
}

func (s *Service) loadKey(ctx context.Context, public string) (key, error) {
	var k key
	err := s.db.QueryRowContext(ctx, `SELECT public_key, secret_key, project_id, created_at, revoked_at FROM project_keys WHERE public_key = $1`, public).
		Scan(&k.public, &k.secret, &k.projectID, &k.createdAt, &k.revokedAt)
	if errors.Is(err, sql.ErrNoRows) {
		err = errNotFound
	}
	return k, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// createProject inserts a project and its first key.
func createProject(ctx context.Context, tx queryer, name string, rate, quota int64, repo string) (project, key, error) {
	now := time.Now().UnixNano()
	p := project{name: name, ratePerMinute: rate, quotaPerHour: quota, groupingVer: event.GroupingVersion, repository: repo, createdAt: now}
	err := tx.QueryRowContext(ctx,
		`INSERT INTO projects (name, rate_limit_per_minute, quota_per_hour, grouping_version, repository, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING id`,
		name, rate, quota, p.groupingVer, repo, now).Scan(&p.id)
	if errors.Is(err, sql.ErrNoRows) {
		return p, key{}, errExists
	}
	if err != nil {
		return p, key{}, err
	}
	k, err := addKey(ctx, tx, p.id)
	return p, k, err
}

var errExists = errors.New("already exists")

func addKey(ctx context.Context, tx queryer, projectID int64) (key, error) {
	k := key{public: randomHex(16), secret: randomHex(16), projectID: projectID, createdAt: time.Now().UnixNano()}
	_, err := tx.ExecContext(ctx, `INSERT INTO project_keys (public_key, project_id, secret_key, created_at) VALUES ($1, $2, $3, $4)`,
		k.public, k.projectID, k.secret, k.createdAt)
	return k, err
}

// DSN is the DSN of a key on a server reachable at publicURL
// ("http://host:port[/prefix]"): {scheme}://{key}@{host}{prefix}/{project}.
func DSN(publicURL, publicKey string, projectID int64) string {
	if publicURL == "" {
		return ""
	}
	u, err := url.Parse(strings.TrimSuffix(publicURL, "/"))
	if err != nil || u.Host == "" {
		return ""
	}
	u.User = url.User(publicKey)
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strconv.FormatInt(projectID, 10)
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// keyCache keeps keys and projects for the intake's hot path.
type keyCache struct {
	ttl         time.Duration
	loadKey     func(context.Context, string) (key, error)
	loadProject func(context.Context, int64) (project, error)
	mu          sync.Mutex
	keys        map[string]cached[key]
	projects    map[int64]cached[project]
}

type cached[T any] struct {
	v       T
	err     error
	expires time.Time
}

func newKeyCache(ttl time.Duration, lk func(context.Context, string) (key, error), lp func(context.Context, int64) (project, error)) *keyCache {
	return &keyCache{ttl: ttl, loadKey: lk, loadProject: lp, keys: map[string]cached[key]{}, projects: map[int64]cached[project]{}}
}

func (c *keyCache) key(ctx context.Context, public string) (key, error) {
	c.mu.Lock()
	e, ok := c.keys[public]
	c.mu.Unlock()
	if ok && time.Now().Before(e.expires) {
		return e.v, e.err
	}
	k, err := c.loadKey(ctx, public)
	if err != nil && !errors.Is(err, errNotFound) {
		return k, err // storage trouble: not cached
	}
	c.mu.Lock()
	if len(c.keys) > 100000 {
		clear(c.keys)
	}
	c.keys[public] = cached[key]{v: k, err: err, expires: time.Now().Add(c.ttl)}
	c.mu.Unlock()
	return k, err
}

func (c *keyCache) project(ctx context.Context, id int64) (project, error) {
	c.mu.Lock()
	e, ok := c.projects[id]
	c.mu.Unlock()
	if ok && time.Now().Before(e.expires) {
		return e.v, e.err
	}
	p, err := c.loadProject(ctx, id)
	if err != nil && !errors.Is(err, errNotFound) {
		return p, err
	}
	c.mu.Lock()
	if len(c.projects) > 100000 {
		clear(c.projects)
	}
	c.projects[id] = cached[project]{v: p, err: err, expires: time.Now().Add(c.ttl)}
	c.mu.Unlock()
	return p, err
}

// forget drops what this process knows about a key or project, so a
// revoke or a new limit applies at once here (other replicas within the TTL).
func (c *keyCache) forget(public string, projectID int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if public != "" {
		delete(c.keys, public)
	}
	if projectID != 0 {
		delete(c.projects, projectID)
	}
}

var _ = fmt.Sprintf
