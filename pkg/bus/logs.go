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
		live = make(chan *nats.Msg, 64<<10)
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
		cancel()
		if err != nil {
			return false, ErrNoLog // a follower looks again at the next refresh
		}
		if info.Size == storedSize {
			return false, nil // nothing new since the last read
		}
		storedSize = info.Size
		// Stream the object: a big log is never held whole. Line k of the
		// log is its k-th record, so the lines already sent are skipped
		// by their length prefix alone.
		// The agent replaces the object while the job runs: a read that
		// meets a replacement loses its chunks (nats: timeout) and is tried
		// again; a follower that still fails waits for the next refresh.
		var src io.ReadSeeker
		var done func()
		for attempt := 1; ; attempt++ {
			if src, done, err = SpoolObject(ctx, obs, jobID); err == nil || ctx.Err() != nil || attempt == 5 {
				break
			}
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		if err != nil {
			if follow && ctx.Err() == nil {
				storedSize = 0 // read it again at the next refresh
				return false, nil
			}
			return false, fmt.Errorf("reading stored log of %s: %w", jobID, err)
		}
		defer done()
		br := bufio.NewReaderSize(src, 64<<10)
		var n uint64
		for ; n < sent; n++ {
			size, err := binary.ReadUvarint(br)
			if err == nil {
				_, err = br.Discard(int(size))
			}
			if errors.Is(err, io.EOF) {
				return false, nil // the store is behind what was sent
			}
			if err != nil {
				return false, fmt.Errorf("reading stored log: %w", err)
			}
		}
		for {
			l := &eventsv1.LogLine{}
			err := protodelim.UnmarshalFrom(br, l)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return false, fmt.Errorf("reading stored log: %w", err)
			}
			if l.GetNumber() <= sent {
				continue
			}
			if l.GetNumber() == sent+1 {
				// In order: send it now instead of collecting the rest.
				delete(pending, l.GetNumber())
				sent++
				if l.GetStream() == "end" {
					return true, nil
				}
				if err := send(l); err != nil {
					return false, err
				}
				continue
			}
			pending[l.GetNumber()] = l
		}
		end, err := deliver()
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
