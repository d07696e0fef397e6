package bus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// LogBucket is the Object Store bucket holding finished jobs' logs, one
// object per job id: a sequence of length-delimited LogLine messages.
const LogBucket = "logs"

// LogStore opens (creating if needed) the log bucket.
func (b *Bus) LogStore(ctx context.Context) (jetstream.ObjectStore, error) {
	return b.ObjectStore(ctx, LogBucket, "finished job logs")
}

// ObjectStore opens (creating if needed) an Object Store bucket kept at the
// bus's replicas, as the streams are: on a three-node cluster an artifact
// or a log must outlive the node that took it. A bucket made with fewer
// replicas (by a shiploop older than this, or a process started without
// --replicas) is raised to them; a bucket is never lowered.
func (b *Bus) ObjectStore(ctx context.Context, bucket, description string) (jetstream.ObjectStore, error) {
	obs, err := b.js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = b.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: bucket, Description: description, Storage: jetstream.FileStorage, Replicas: b.opts.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // made by another process meanwhile
			obs, err = b.js.ObjectStore(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bus: object store %s: %w", bucket, err)
	}
	if _, done := b.replicated.Load(bucket); done {
		return obs, nil
	}
	st, err := obs.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bus: object store %s: %w", bucket, err)
	}
	if st.Replicas() < b.opts.Replicas {
		// Through the bucket's stream, so that every other setting stays.
		stream, err := b.js.Stream(ctx, "OBJ_"+bucket)
		if err == nil {
			sc := stream.CachedInfo().Config
			sc.Replicas = b.opts.Replicas
			_, err = b.js.UpdateStream(ctx, sc)
		}
		if err != nil {
			return nil, fmt.Errorf("bus: raising object store %s to %d replicas: %w", bucket, b.opts.Replicas, err)
		}
	}
	b.replicated.Store(bucket, true)
	return obs, nil
}

// EncodeLog appends one line to a log being written.
func EncodeLog(w io.Writer, l *eventsv1.LogLine) error {
	_, err := protodelim.MarshalTo(w, l)
	return err
}

// DecodeLog reads a stored log.
func DecodeLog(data []byte) ([]*eventsv1.LogLine, error) {
	r := bufio.NewReader(bytes.NewReader(data))
	var out []*eventsv1.LogLine
	for {
		l := &eventsv1.LogLine{}
		err := protodelim.UnmarshalFrom(r, l)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("reading stored log: %w", err)
		}
		out = append(out, l)
	}
}

// liveLogBuffer is how many live lines a follower holds unread; past it
// the subscription drops them and the follower reads them from the store.
var liveLogBuffer = 64 << 10

// maxPendingLines bounds the live lines a follower holds behind a gap.
const maxPendingLines = 50_000

// ErrNoLog is FollowLog's answer, without follow, for a job with no stored log yet.
var ErrNoLog = errors.New("no stored log for this job yet")

// StoredLog reads a job's stored log; ErrNoLog when there is none.
func (b *Bus) StoredLog(ctx context.Context, jobID string) ([]*eventsv1.LogLine, error) {
	obs, err := b.js.ObjectStore(ctx, LogBucket)
	if err != nil {
		return nil, ErrNoLog
	}
	data, err := obs.GetBytes(ctx, jobID)
	if err != nil {
		return nil, ErrNoLog
	}
	return DecodeLog(data)
}

// SpoolObject fetches an Object Store object whole before it is read: the
// store's reader times out when its consumer waits on a slow reader (a log
// follower, a database). A small object is held in memory, a big one in a
// temporary file, so memory stays bounded; done removes the file. An error
// of the local file is an *fs.PathError.
func SpoolObject(ctx context.Context, obs jetstream.ObjectStore, name string) (src io.ReadSeeker, done func(), err error) {
	r, err := obs.Get(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = r.Close() }()
	if info, ierr := r.Info(); ierr == nil && info.Size <= 4<<20 {
		data, err := io.ReadAll(r)
		if err != nil {
			return nil, nil, err
		}
		return bytes.NewReader(data), func() {}, nil
	}
	f, err := os.CreateTemp("", "shiploop-spool-*")
	if err != nil {
		return nil, nil, err
	}
	done = func() { _ = f.Close(); _ = os.Remove(f.Name()) }
	if _, err := io.Copy(f, r); err != nil {
		done()
		return nil, nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		done()
		return nil, nil, err
	}
	return f, done, nil
}

// FollowLog sends a job's log lines numbered after `after`, in order and each
// once. It sends what is stored (the whole log once the job has ended, up to
// the last finished step before); with follow it also subscribes to the live
// tail first and goes on until the end marker or ctx ends. The store, which
// the agent refreshes every few seconds, is read again only to fill a gap
// before the first live line or after a stall: reading a big log on every
// tick costs far more than the tail.
func (b *Bus) FollowLog(ctx context.Context, jobID string, after uint64, follow bool, send func(*eventsv1.LogLine) error) error {
	var live chan *nats.Msg
	if follow {
		live = make(chan *nats.Msg, liveLogBuffer)
		sub, err := b.nc.ChanSubscribe(LogSubject(jobID), live)
		if err != nil {
			return fmt.Errorf("bus: subscribing to the log of %s: %w", jobID, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	sent := after
	pending := map[uint64]*eventsv1.LogLine{}
	// deliver sends what is in order; true at the end marker.
	deliver := func() (bool, error) {
		for {
			l, ok := pending[sent+1]
			if !ok {
				return false, nil
			}
			delete(pending, sent+1)
			sent++
			if l.GetStream() == "end" {
				return true, nil
			}
			if err := send(l); err != nil {
				return false, err
			}
		}
	}
	var storedSize uint64 // what the last read of the store saw
	var cur logCursor     // where the reading of the stored object stands
	var chunks jetstream.Stream
	fromStore := func() (bool, error) {
		// A follower's context may carry its client's deadline, however far:
		// nats.go then waits for that deadline, not its own 5 s, for the
		// answer of a node that died (see apiTimeout).
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		obs, err := b.js.ObjectStore(actx, LogBucket)
		var info *jetstream.ObjectInfo
		if err == nil {
			info, err = obs.GetInfo(actx, jobID)
		}
		if err == nil && chunks == nil {
			chunks, err = b.js.Stream(actx, "OBJ_"+LogBucket)
		}
		cancel()
		if err != nil {
			return false, ErrNoLog // a follower looks again at the next refresh
		}
		if info.Size == storedSize {
			return false, nil // nothing new since the last read
		}
		storedSize = info.Size
		// The agent only appends to the object (services/agent/joblog.go):
		// a read goes on from where the last one stopped, fetching only the
		// chunks after it, one at a time, so a big log is never held whole
		// nor read again. A new object (the agent writes one anew after a
		// failed store) is read from its start. Line k of the log is its
		// k-th record, so the lines already sent are skipped by their length
		// prefix alone.
		var end bool
		for attempt := 1; ; attempt++ {
			if cur.nuid != info.NUID || cur.chunk > info.Chunks {
				cur = logCursor{nuid: info.NUID, from: 1}
			}
			end, err = readStoredLog(ctx, chunks, info, &cur, &sent, pending, send)
			var se sendError
			if err == nil || errors.As(err, &se) || ctx.Err() != nil || attempt == 5 {
				break
			}
			// Chunks gone: the object was replaced under the read.
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				cur = logCursor{}
				actx, cancel := context.WithTimeout(ctx, apiTimeout)
				ninfo, ierr := obs.GetInfo(actx, jobID)
				cancel()
				if ierr == nil {
					info, storedSize = ninfo, ninfo.Size
				}
			}
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		if se := (sendError{}); errors.As(err, &se) {
			return false, se.err
		}
		if err != nil {
			if follow && ctx.Err() == nil {
				storedSize = 0 // read it again at the next refresh
				return false, nil
			}
			return false, fmt.Errorf("reading stored log of %s: %w", jobID, err)
		}
		if end {
			return true, nil
		}
		end, err = deliver()
		for n := range pending {
			if n <= sent {
				delete(pending, n)
			}
		}
		return end, err
	}
	end, err := fromStore()
	if !follow {
		return err
	}
	if end || err != nil && !errors.Is(err, ErrNoLog) {
		return err
	}
	refresh := time.NewTicker(500 * time.Millisecond)
	defer refresh.Stop()
	progressed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-live:
			l := &eventsv1.LogLine{}
			if proto.Unmarshal(m.Data, l) != nil || l.GetNumber() <= sent {
				continue
			}
			if len(pending) >= maxPendingLines && l.GetNumber() > sent+1 {
				continue // behind a gap: the store will have it, memory stays bounded
			}
			pending[l.GetNumber()] = l
			before := sent
			end, err := deliver()
			if end || err != nil {
				return err
			}
			progressed = progressed || sent > before
		case <-refresh.C:
			if progressed && len(pending) == 0 {
				progressed = false
				continue
			}
			progressed = false
			if end, err := fromStore(); end || err != nil && !errors.Is(err, ErrNoLog) {
				return err
			}
		}
	}
}

// logCursor is where a follower's reading of a stored log object stands:
// the next record starts off bytes into the object's chunk number chunk,
// found by looking from stream sequence from for the chunks' subject.
type logCursor struct {
	nuid  string // the object's chunks' id
	chunk uint32 // chunks before the next record's
	from  uint64 // stream sequence to look for that chunk from
	off   int    // bytes of that chunk before the next record
	lines uint64 // records before the next record
}

// logChunkFetched, when set (by tests), is called for every stored log
// chunk a follower fetches.
var logChunkFetched func(jobID string, seq uint64)

// sendError is an error of a follower's send.
type sendError struct{ err error }

func (e sendError) Error() string { return e.err.Error() }

// readStoredLog reads the stored log object of info from cur on, moving
// cur past every record it reads: lines numbered sent+1 on are sent in
// order (sent counts them), others kept in pending. True at the end marker.
func readStoredLog(ctx context.Context, stream jetstream.Stream, info *jetstream.ObjectInfo, cur *logCursor, sent *uint64, pending map[uint64]*eventsv1.LogLine, send func(*eventsv1.LogLine) error) (bool, error) {
	r := &chunkReader{ctx: ctx, stream: stream, jobID: info.Name, subject: fmt.Sprintf("$O.%s.C.%s", LogBucket, info.NUID),
		chunk: cur.chunk, chunks: info.Chunks, next: cur.from, skip: cur.off}
	advance := func() {
		cur.lines++
		if r.data != nil && r.off == len(r.data) { // the next record starts the next chunk
			cur.chunk, cur.from, cur.off = r.chunk+1, r.seq+1, 0
		} else if r.data != nil {
			cur.chunk, cur.from, cur.off = r.chunk, r.seq, r.off
		}
	}
	for cur.lines < *sent {
		size, err := binary.ReadUvarint(r)
		if err == nil {
			err = r.discard(size)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil // the store is behind what was sent
		}
		if err != nil {
			return false, err
		}
		advance()
	}
	for {
		l := &eventsv1.LogLine{}
		err := protodelim.UnmarshalFrom(r, l)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		advance()
		switch n := l.GetNumber(); {
		case n <= *sent:
		case n == *sent+1:
			// In order: send it now instead of collecting the rest.
			delete(pending, n)
			*sent = n
			if l.GetStream() == "end" {
				return true, nil
			}
			if err := send(l); err != nil {
				return false, sendError{err}
			}
		default:
			pending[n] = l
		}
	}
}

// chunkReader reads an Object Store object's chunks from chunk number
// chunk (looked for from stream sequence next) to the object's last, one
// chunk in memory at a time, skipping skip bytes of the first. A chunk
// is one JetStream get: no consumer waits on a slow reader.
type chunkReader struct {
	ctx            context.Context
	stream         jetstream.Stream
	jobID, subject string
	chunk, chunks  uint32 // number of the chunk in data (of the next before the first); how many the object has
	next, seq      uint64 // where to look for the next chunk; data's sequence
	data           []byte
	off, skip      int
}

func (r *chunkReader) fill() error {
	for r.data == nil || r.off == len(r.data) {
		n := r.chunk
		if r.data != nil {
			n++
		}
		if n >= r.chunks {
			return io.EOF
		}
		ctx, cancel := context.WithTimeout(r.ctx, apiTimeout)
		m, err := r.stream.GetMsg(ctx, r.next, jetstream.WithGetMsgSubject(r.subject))
		cancel()
		if err != nil {
			return err
		}
		if logChunkFetched != nil {
			logChunkFetched(r.jobID, m.Sequence)
		}
		r.chunk, r.seq, r.next, r.data, r.off = n, m.Sequence, m.Sequence+1, m.Data, 0
		if r.skip > 0 {
			r.off, r.skip = min(r.skip, len(r.data)), 0
		}
	}
	return nil
}

func (r *chunkReader) ReadByte() (byte, error) {
	if err := r.fill(); err != nil {
		return 0, err
	}
	c := r.data[r.off]
	r.off++
	return c, nil
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := r.fill(); err != nil {
		return 0, err
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

func (r *chunkReader) discard(n uint64) error {
	for n > 0 {
		if err := r.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		k := min(n, uint64(len(r.data)-r.off))
		r.off += int(k)
		n -= k
	}
	return nil
}
