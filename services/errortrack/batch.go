package errortrack

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	"github.com/shiploop/shiploop/services/errortrack/envelope"
	"github.com/shiploop/shiploop/services/errortrack/event"
)

// handleEnvelopes is the ingest consumer's batch handler: it stores a
// batch of envelopes as handleEnvelope would one by one, with statements
// shared by the whole batch for the common case, an envelope of one event
// that joins a known, unresolved issue (or one transaction). Per event,
// handleEnvelope makes about ten round trips to the database; on
// PostgreSQL those, not the CPU, bounded the intake to a few hundred
// events a second. Anything else (an event that opens an issue or may
// regress one, attachments, sessions, reports, anything malformed) is
// handed to handleEnvelope in its turn, after what came before it was
// written, so the order of effects is the same.
func (s *Service) handleEnvelopes(ctx context.Context, tx *bus.Tx, evs []bus.Event) error {
	b := &eventBatch{s: s, tx: tx, projects: map[int64]*project{}, seen: map[eventKey]bool{}}
	items, err := b.prepare(ctx, evs)
	if err != nil {
		return err
	}
	if err := b.lookup(ctx, items); err != nil {
		return err
	}
	for i, it := range items {
		switch {
		case it.skip:
			continue
		case it.ev == nil || it.needsOwnPath(b):
			if err := b.flush(ctx); err != nil {
				return err
			}
			if err := s.handleEnvelope(ctx, tx, it.cause); err != nil {
				return err
			}
			// It may have stored an event that comes again, opened an
			// issue, added hashes or changed a status.
			if err := b.dropStored(ctx, items[i+1:]); err != nil {
				return err
			}
			if err := b.lookup(ctx, items[i+1:]); err != nil {
				return err
			}
		default:
			b.join(it)
		}
	}
	return b.flush(ctx)
}

type eventKey struct {
	project int64
	id      string
}

type hashKey struct {
	project int64
	hash    string
}

// batchItem is one envelope of a batch. ev is nil when the envelope is not
// one event or transaction, or cannot be read: handleEnvelope takes it.
type batchItem struct {
	cause    bus.Event
	skip     bool // a repeat of an event already stored or in this batch, or its project is gone
	p        *project
	eventID  string
	ev       *event.Event
	g        event.Grouping
	payload  []byte
	received time.Time
	when     time.Time
	release  string
	env      string
	issueID  int64 // the issue it joins (0 for a transaction)
}

// needsOwnPath says whether an error event must go through handleEnvelope:
// it opens an issue, or its issue is resolved (a regression is decided with
// the release history) or unknown here.
func (it *batchItem) needsOwnPath(b *eventBatch) bool {
	if it.ev.Type == "transaction" {
		return false
	}
	it.issueID = 0
	for _, h := range it.g.Hashes {
		if id, ok := b.hashes[hashKey{it.p.id, h}]; ok {
			it.issueID = id
			break
		}
	}
	if it.issueID == 0 {
		return true
	}
	st, ok := b.status[it.issueID]
	return !ok || st == int32(errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED) || st == int32(errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE)
}

// eventBatch holds what a batch knows and the events waiting to be written.
type eventBatch struct {
	s        *Service
	tx       *bus.Tx
	projects map[int64]*project // nil for a project deleted since
	seen     map[eventKey]bool  // events of this batch stored or waiting
	hashes   map[hashKey]int64
	status   map[int64]int32
	pending  []*batchItem
	newHash  map[hashKey]int64 // hashes pending events add to their issues
}

// prepare reads every envelope of the batch, and skips events stored
// before or repeated in it. The reading, most of the batch's CPU time, is
// spread over the CPUs: the intake's requests compete for them meanwhile.
func (b *eventBatch) prepare(ctx context.Context, evs []bus.Event) ([]*batchItem, error) {
	items := make([]*batchItem, len(evs))
	projects := make([]int64, len(evs)) // of the envelopes of one event
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), (len(evs)+15)/16) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(evs); i = int(next.Add(1)) - 1 {
				items[i], projects[i] = b.read(evs[i])
			}
		})
	}
	wg.Wait()
	for i, it := range items {
		if projects[i] == 0 {
			continue
		}
		p, err := b.project(ctx, projects[i])
		if err != nil {
			return nil, err
		}
		if p == nil {
			it.ev, it.skip = nil, true // the project was deleted since: nothing to keep
			continue
		}
		it.p = p
	}
	for _, it := range items {
		if it.ev == nil {
			continue
		}
		k := eventKey{it.p.id, it.eventID}
		if b.seen[k] {
			it.skip = true // repeated in this batch: counted once
		}
		b.seen[k] = true
	}
	return items, b.dropStored(ctx, items)
}

// read reads one envelope. For an envelope of one event or transaction it
// also returns the project id; the item's ev is nil when handleEnvelope
// must take it.
func (b *eventBatch) read(cause bus.Event) (*batchItem, int64) {
	it := &batchItem{cause: cause}
	in, ok := cause.Data.(*errortrackv1.IngestedEnvelope)
	if !ok {
		return it, 0
	}
	if in.GetBodyObject() != "" {
		return it, 0 // a large envelope: handleEnvelope reads it from the Object Store
	}
	env, err := envelope.Parse(in.GetBody(), b.s.cfg.Limits)
	if err != nil || len(env.Items) != 1 || env.Items[0].Type != "event" && env.Items[0].Type != "transaction" {
		return it, 0
	}
	ev, err := event.Parse(env.Items[0].Payload)
	if err != nil {
		return it, in.GetProjectId()
	}
	id := envelope.EventID(env.Header.EventID)
	if id == "" {
		id = envelope.EventID(ev.EventID)
	}
	if id == "" {
		return it, in.GetProjectId()
	}
	it.ev, it.eventID, it.payload = ev, id, env.Items[0].Payload
	it.received = in.GetReceivedAt().AsTime()
	it.when = ev.Timestamp
	if it.when.IsZero() || it.when.After(it.received.Add(time.Hour)) {
		it.when = it.received
	}
	it.release = event.Clean(ev.Release, 200)
	it.env = event.Clean(ev.Environment, 64)
	if it.env == "" {
		it.env = "production"
	}
	it.g = event.Group(ev)
	return it, in.GetProjectId()
}

// dropStored skips the events of items that are stored already.
func (b *eventBatch) dropStored(ctx context.Context, items []*batchItem) error {
	ids := map[int64][]string{}
	for _, it := range items {
		if it.ev != nil && !it.skip {
			ids[it.p.id] = append(ids[it.p.id], it.eventID)
		}
	}
	stored := map[eventKey]bool{}
	for pid, list := range ids {
		for start := 0; start < len(list); start += 256 {
			cond, args := oneOf(b.s.db.Engine, "event_id", 2, list[start:min(start+256, len(list))])
			rows, err := b.tx.QueryContext(ctx, `SELECT event_id FROM events WHERE project_id = $1 AND `+cond, append([]any{pid}, args...)...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				stored[eventKey{pid, id}] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
	}
	for _, it := range items {
		if it.ev != nil && stored[eventKey{it.p.id, it.eventID}] {
			it.skip = true // seen before: counted once
		}
	}
	return nil
}

func (b *eventBatch) project(ctx context.Context, id int64) (*project, error) {
	if p, ok := b.projects[id]; ok {
		return p, nil
	}
	p, err := scanProject(b.tx.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE id = $1`, id))
	if errors.Is(err, errNotFound) {
		b.projects[id] = nil
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b.projects[id] = &p
	return &p, nil
}

// lookup loads the issues the hashes of items point to, and their status.
func (b *eventBatch) lookup(ctx context.Context, items []*batchItem) error {
	b.hashes, b.status = map[hashKey]int64{}, map[int64]int32{}
	for k, id := range b.newHash {
		b.hashes[k] = id
	}
	want := map[int64][]string{}
	for _, it := range items {
		if it.ev == nil || it.skip || it.ev.Type == "transaction" {
			continue
		}
		for _, h := range it.g.Hashes {
			if _, ok := b.hashes[hashKey{it.p.id, h}]; !ok {
				b.hashes[hashKey{it.p.id, h}] = 0 // asked for below
				want[it.p.id] = append(want[it.p.id], h)
			}
		}
	}
	issues := map[int64]bool{}
	for pid, hashes := range want {
		for start := 0; start < len(hashes); start += 256 {
			cond, args := oneOf(b.s.db.Engine, "hash", 2, hashes[start:min(start+256, len(hashes))])
			rows, err := b.tx.QueryContext(ctx, `SELECT hash, issue_id FROM issue_hashes WHERE project_id = $1 AND `+cond, append([]any{pid}, args...)...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var h string
				var id int64
				if err := rows.Scan(&h, &id); err != nil {
					rows.Close()
					return err
				}
				b.hashes[hashKey{pid, h}] = id
				issues[id] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
	}
	for k, id := range b.hashes {
		if id == 0 {
			delete(b.hashes, k)
		} else {
			issues[id] = true
		}
	}
	ids := make([]int64, 0, len(issues))
	for id := range issues {
		ids = append(ids, id)
	}
	for start := 0; start < len(ids); start += 256 {
		cond, args := oneOf(b.s.db.Engine, "id", 1, ids[start:min(start+256, len(ids))])
		rows, err := b.tx.QueryContext(ctx, `SELECT id, status FROM issues WHERE `+cond, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			var st int32
			if err := rows.Scan(&id, &st); err != nil {
				rows.Close()
				return err
			}
			b.status[id] = st
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// join queues an event (or transaction) for the next flush; an error
// event's hashes not yet known now point to its issue, as storing it alone
// would have made them.
func (b *eventBatch) join(it *batchItem) {
	if it.issueID != 0 {
		for _, h := range it.g.Hashes {
			k := hashKey{it.p.id, h}
			if _, ok := b.hashes[k]; !ok {
				b.hashes[k] = it.issueID
				if b.newHash == nil {
					b.newHash = map[hashKey]int64{}
				}
				b.newHash[k] = it.issueID
			}
		}
	}
	b.pending = append(b.pending, it)
}

// issueUpdate is what the pending events change in one issue.
type issueUpdate struct {
	seen, users int64
	lastEventID string
	// lastSeen is the latest event time; lastRelease the release of the
	// last event (in order) at or after every earlier one, which is what
	// the per-event CASE leaves in last_release.
	lastSeen    int64
	lastRelease string
}

type issueReleaseKey struct {
	issue        int64
	release, env string
}

type issueReleaseRow struct {
	seen, first, last int64
}

type releaseCountKey struct {
	project      int64
	release, env string
}

type releaseCountRow struct {
	errs, transactions int64
	first, last        int64
}

// flush writes the pending events with a few statements for all of them.
func (b *eventBatch) flush(ctx context.Context) error {
	pend := b.pending
	b.pending = nil
	if len(pend) == 0 {
		return nil
	}
	tx := b.tx
	// Releases, each first seen at its first event's time.
	type releaseKey struct {
		project int64
		version string
	}
	var rows [][]any
	releases := map[releaseKey]bool{}
	for _, it := range pend {
		k := releaseKey{it.p.id, it.release}
		if it.release != "" && !releases[k] {
			releases[k] = true
			rows = append(rows, []any{it.p.id, it.release, it.when.UnixNano()})
		}
	}
	if err := insertRows(ctx, tx, b.s.db.Engine, `INSERT INTO releases (project_id, version, first_seen) VALUES `, ` ON CONFLICT DO NOTHING`, rows, true); err != nil {
		return fmt.Errorf("storing releases: %w", err)
	}
	// New hashes of known issues.
	rows = rows[:0]
	for k, id := range b.newHash {
		rows = append(rows, []any{k.project, k.hash, id, b.projects[k.project].groupingVer})
	}
	b.newHash = nil
	if err := insertRows(ctx, tx, b.s.db.Engine, `INSERT INTO issue_hashes (project_id, hash, issue_id, grouping_version) VALUES `, ` ON CONFLICT DO NOTHING`, rows, true); err != nil {
		return fmt.Errorf("storing issue hashes: %w", err)
	}
	// Users: an issue counts each user once, when first seen.
	type userKey struct {
		issue int64
		key   string
	}
	users := map[userKey]bool{}
	rows = rows[:0]
	for _, it := range pend {
		if it.issueID == 0 {
			continue
		}
		k := userKey{it.issueID, event.Clean(it.ev.User.Key(), 200)}
		if k.key != "" && !users[k] {
			users[k] = true
			rows = append(rows, []any{k.issue, k.key})
		}
	}
	newUsers := map[int64]int64{}
	for start := 0; start < len(rows); start += 64 {
		chunk := rows[start:min(start+64, len(rows))]
		if p := pow2(len(chunk)); p != len(chunk) { // repeated rows are not inserted, nor returned
			chunk = append(chunk[:len(chunk):len(chunk)], slices.Repeat(chunk[len(chunk)-1:], p-len(chunk))...)
		}
		q, args := valuesList(`INSERT INTO issue_users (issue_id, user_key) VALUES `, chunk)
		res, err := tx.QueryContext(ctx, q+` ON CONFLICT DO NOTHING RETURNING issue_id`, args...)
		if err != nil {
			return fmt.Errorf("storing issue users: %w", err)
		}
		for res.Next() {
			var id int64
			if err := res.Scan(&id); err != nil {
				res.Close()
				return err
			}
			newUsers[id]++
		}
		res.Close()
		if err := res.Err(); err != nil {
			return err
		}
	}
	// Per issue, per issue and release, per release: what the events add.
	updates := map[int64]*issueUpdate{}
	var order []int64
	perRelease := map[issueReleaseKey]*issueReleaseRow{}
	var releaseOrder []issueReleaseKey
	counts := map[releaseCountKey]*releaseCountRow{}
	var countOrder []releaseCountKey
	for _, it := range pend {
		ts := it.when.UnixNano()
		if it.issueID != 0 {
			u := updates[it.issueID]
			if u == nil {
				u = &issueUpdate{lastSeen: ts, lastRelease: it.release}
				updates[it.issueID] = u
				order = append(order, it.issueID)
			} else if ts >= u.lastSeen {
				u.lastSeen, u.lastRelease = ts, it.release
			}
			u.seen++
			u.lastEventID = it.eventID
			rk := issueReleaseKey{it.issueID, it.release, it.env}
			r := perRelease[rk]
			if r == nil {
				r = &issueReleaseRow{first: ts, last: ts}
				perRelease[rk] = r
				releaseOrder = append(releaseOrder, rk)
			}
			r.seen++
			r.first, r.last = min(r.first, ts), max(r.last, ts)
		}
		// As storeEvent counts for countRelease.
		var errs, transactions int64
		switch {
		case it.ev.Type == "transaction":
			transactions = 1
		case it.ev.Level == "error" || it.ev.Level == "fatal":
			errs = 1
		}
		if it.release != "" && errs+transactions > 0 {
			ck := releaseCountKey{it.p.id, it.release, it.env}
			c := counts[ck]
			at := it.received.UnixNano()
			if c == nil {
				c = &releaseCountRow{first: at, last: at}
				counts[ck] = c
				countOrder = append(countOrder, ck)
			}
			c.errs += errs
			c.transactions += transactions
			c.first, c.last = min(c.first, at), max(c.last, at)
		}
	}
	rows = rows[:0]
	for _, k := range releaseOrder {
		r := perRelease[k]
		rows = append(rows, []any{k.issue, k.release, k.env, r.seen, r.first, r.last})
	}
	if err := insertRows(ctx, tx, b.s.db.Engine, `INSERT INTO issue_releases (issue_id, release, environment, times_seen, first_seen, last_seen) VALUES `,
		` ON CONFLICT (issue_id, release, environment) DO UPDATE SET times_seen = issue_releases.times_seen + excluded.times_seen,
		first_seen = CASE WHEN excluded.first_seen < issue_releases.first_seen THEN excluded.first_seen ELSE issue_releases.first_seen END,
		last_seen = CASE WHEN excluded.last_seen > issue_releases.last_seen THEN excluded.last_seen ELSE issue_releases.last_seen END`, rows, false); err != nil {
		return fmt.Errorf("storing issue releases: %w", err)
	}
	rows = rows[:0]
	for _, k := range countOrder {
		c := counts[k]
		rows = append(rows, []any{k.project, k.release, k.env, c.errs, c.transactions, int64(0), c.first, c.last})
	}
	if err := insertRows(ctx, tx, b.s.db.Engine, `INSERT INTO release_counts (project_id, release, environment, errors, transactions, sessions, first_received, last_received) VALUES `,
		` ON CONFLICT (project_id, release, environment) DO UPDATE SET errors = release_counts.errors + excluded.errors,
		transactions = release_counts.transactions + excluded.transactions, sessions = release_counts.sessions + excluded.sessions,
		first_received = CASE WHEN excluded.first_received < release_counts.first_received THEN excluded.first_received ELSE release_counts.first_received END,
		last_received = CASE WHEN excluded.last_received > release_counts.last_received THEN excluded.last_received ELSE release_counts.last_received END`, rows, false); err != nil {
		return fmt.Errorf("counting releases: %w", err)
	}
	for _, id := range order {
		u := updates[id]
		if _, err := tx.ExecContext(ctx, `UPDATE issues SET times_seen = times_seen + $2, users = users + $3, last_event_id = $4,
			last_seen = CASE WHEN $5 > last_seen THEN $5 ELSE last_seen END,
			last_release = CASE WHEN $5 >= last_seen THEN $6 ELSE last_release END WHERE id = $1`,
			id, u.seen, newUsers[id], u.lastEventID, u.lastSeen, u.lastRelease); err != nil {
			return fmt.Errorf("updating issue %d: %w", id, err)
		}
	}
	rows = rows[:0]
	for _, it := range pend {
		msg := it.ev.Formatted
		if msg == "" {
			msg = it.ev.Message
		}
		rows = append(rows, []any{it.p.id, it.eventID, it.issueID, it.ev.Type, it.g.Title, event.Clean(msg, 8192), event.Clean(it.ev.Level, 16), it.release, it.env,
			event.Clean(it.ev.Platform, 32), it.when.UnixNano(), it.received.UnixNano(), event.Clean(string(it.payload), 0)})
	}
	if err := insertRows(ctx, tx, b.s.db.Engine, `INSERT INTO events (project_id, event_id, issue_id, type, title, message, level, release, environment, platform, occurred_at, received_at, data) VALUES `,
		` ON CONFLICT DO NOTHING`, rows, true); err != nil {
		return fmt.Errorf("storing events: %w", err)
	}
	return nil
}

// insertRows runs head VALUES (…), (…) tail for rows. On PostgreSQL a
// statement takes up to 64 rows, a power of two of them, so that the
// driver's cache of prepared statements (pgx prepares each distinct text
// once) holds a handful of texts, not one per batch size: with dupsOK
// (tail ignores a repeated row: ON CONFLICT DO NOTHING) the last rows are
// repeated up to one, otherwise the rows are split. On SQLite, in process,
// a round trip costs nothing but its driver parses every statement anew:
// one row's statement, prepared once, runs for each row.
func insertRows(ctx context.Context, tx *bus.Tx, engine store.Engine, head, tail string, rows [][]any, dupsOK bool) error {
	if len(rows) == 0 {
		return nil
	}
	if engine == store.SQLite {
		st, err := tx.PrepareContext(ctx, head+"("+placeholders(1, len(rows[0]))+")"+tail)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range rows {
			if _, err := st.ExecContext(ctx, r...); err != nil {
				return err
			}
		}
		return nil
	}
	for len(rows) > 0 {
		n := min(64, len(rows))
		chunk := rows[:n]
		if p := pow2(n); p != n {
			if dupsOK {
				chunk = append(chunk[:n:n], slices.Repeat(rows[n-1:n], p-n)...)
			} else {
				n = p / 2
				chunk = rows[:n]
			}
		}
		q, args := valuesList(head, chunk)
		if _, err := tx.ExecContext(ctx, q+tail, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// oneOf is the condition "column is one of values", from argument $n. On
// PostgreSQL it is "= ANY($n)" with one array argument: the generic plan
// of a prepared "IN ($n, …)", made while the table was still empty, went
// on using the primary key for the project alone and filtering every
// event of it (150 ms a batch at 40,000 events); with the array it uses
// the whole key. SQLite plans "IN (…)" by the index and has no arrays.
func oneOf[T any](engine store.Engine, column string, n int, values []T) (string, []any) {
	if engine == store.Postgres {
		return fmt.Sprintf("%s = ANY($%d)", column, n), []any{values}
	}
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	return column + " IN (" + placeholders(n, len(values)) + ")", args
}

// pow2 is the least power of two ≥ n.
func pow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// valuesList appends ($1, $2), ($3, $4)… for rows to head.
func valuesList(head string, rows [][]any) (string, []any) {
	var q strings.Builder
	q.WriteString(head)
	args := make([]any, 0, len(rows)*len(rows[0]))
	for i, r := range rows {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(" + placeholders(len(args)+1, len(r)) + ")")
		args = append(args, r...)
	}
	return q.String(), args
}

// placeholders is "$from, $from+1, …", n of them.
func placeholders(from, n int) string {
	var q strings.Builder
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "$%d", from+i)
	}
	return q.String()
}
