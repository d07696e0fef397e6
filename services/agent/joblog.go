package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// jobLog is a job's log on its way out: each line goes live on core NATS
// at once and into a spill file; what the file gained is appended to the
// job's Object Store object when a step ends, every 5 seconds while one
// runs, and when the job ends. Memory stays bounded however much a step
// prints: the spill file holds the log, and a store sends one chunk at a
// time.
type jobLog struct {
	bus   *bus.Bus
	jobID string

	storeMu sync.Mutex // one upload at a time
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	n       uint64 // last line number
	size    int64  // bytes written (buffered included)
	stored  int64  // bytes already in the Object Store
	err     error

	// The object appended to (under storeMu): its chunks' subject id,
	// how many it has, the digest of what they hold, and whether a meta
	// names it yet. nuid is empty before the first store and after a
	// failed one: the next store writes the object anew.
	nuid     string
	chunks   uint32
	digest   hash.Hash
	metaSent bool
	chunk    []byte
}

func newJobLog(b *bus.Bus, dir, jobID string) (*jobLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "log-*")
	if err != nil {
		return nil, fmt.Errorf("job log: %w", err)
	}
	return &jobLog{bus: b, jobID: jobID, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// add records one line and sends it live.
func (l *jobLog) add(step, stream, text string, t time.Time) {
	l.mu.Lock()
	l.n++
	line := &eventsv1.LogLine{JobId: l.jobID, Step: step, Number: l.n, Time: timestamppb.New(t), Stream: stream, Text: text}
	cw := countingWriter{w: l.w}
	if err := bus.EncodeLog(&cw, line); err != nil && l.err == nil {
		l.err = err
	}
	l.size += cw.n
	l.mu.Unlock()
	_ = l.bus.PublishLog(l.jobID, line)
}

// store appends what was written since the last store to the Object Store.
func (l *jobLog) store(ctx context.Context) error {
	l.storeMu.Lock()
	defer l.storeMu.Unlock()
	l.mu.Lock()
	if err := l.w.Flush(); err != nil {
		l.mu.Unlock()
		return err
	}
	size := l.size
	l.mu.Unlock()
	if size == l.stored {
		return nil
	}
	obs, err := l.bus.LogStore(ctx)
	if err != nil {
		return err
	}
	if err := l.appendObject(ctx, obs, size); err != nil {
		if !l.metaSent && l.nuid != "" { // chunks no meta names: gone
			l.purgeChunks(l.nuid)
		}
		l.nuid, l.stored, l.chunks, l.digest, l.metaSent = "", 0, 0, nil, false
		return fmt.Errorf("storing log of job %s: %w", l.jobID, err)
	}
	return nil
}

// logChunkSize is the size of a stored log's chunks, the Object Store's
// default.
const logChunkSize = 128 << 10

// appendObject brings the job's object to the first size bytes of the
// spill file. It writes the Object Store's own layout (chunks on
// $O.<bucket>.C.<nuid>, the info on $O.<bucket>.M.<name> as a rollup), so
// any Object Store reader reads it; unlike ObjectStore.Put, which writes
// a new object (the whole log again at every store, and all of it in
// flight at once), it adds only the new bytes to the same chunks, one
// chunk at a time, and then publishes the info that counts them. A reader
// that meets the new chunks before the new info gets a digest mismatch and
// reads again, as it does when Put replaces an object under it.
func (l *jobLog) appendObject(ctx context.Context, obs jetstream.ObjectStore, size int64) error {
	js := l.bus.JetStream()
	var previous string // chunks of an object this one replaces
	if l.nuid == "" {
		info, err := obs.GetInfo(ctx, l.jobID, jetstream.GetObjectInfoShowDeleted())
		switch {
		case err == nil && !info.Deleted:
			previous = info.NUID
		case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
			return err
		}
		id := make([]byte, 12)
		_, _ = rand.Read(id)
		l.nuid, l.stored, l.chunks, l.digest, l.metaSent = hex.EncodeToString(id), 0, 0, sha256.New(), false
	}
	if l.chunk == nil {
		l.chunk = make([]byte, logChunkSize)
	}
	subject := fmt.Sprintf("$O.%s.C.%s", bus.LogBucket, l.nuid)
	r := io.NewSectionReader(l.f, l.stored, size-l.stored)
	for {
		n, err := io.ReadFull(r, l.chunk)
		if n > 0 {
			if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: l.chunk[:n]}); err != nil {
				return err
			}
			l.digest.Write(l.chunk[:n])
			l.chunks++
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: l.jobID, Opts: &jetstream.ObjectMetaOptions{ChunkSize: logChunkSize}},
		Bucket:     bus.LogBucket, NUID: l.nuid, Size: uint64(size), Chunks: l.chunks, Digest: jetstream.GetObjectDigestValue(l.digest),
	}
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	meta := nats.NewMsg(fmt.Sprintf("$O.%s.M.%s", bus.LogBucket, base64.URLEncoding.EncodeToString([]byte(l.jobID))))
	meta.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	meta.Data = data
	if _, err := js.PublishMsg(ctx, meta); err != nil {
		return err
	}
	l.metaSent, l.stored = true, size
	if previous != "" && previous != l.nuid {
		l.purgeChunks(previous)
	}
	return nil
}

// purgeChunks removes the chunks of an object no info names any more.
func (l *jobLog) purgeChunks(nuid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s, err := l.bus.JetStream().Stream(ctx, "OBJ_"+bus.LogBucket); err == nil {
		_ = s.Purge(ctx, jetstream.WithPurgeSubject(fmt.Sprintf("$O.%s.C.%s", bus.LogBucket, nuid)))
	}
}

// keepStored stores the log every interval until ctx ends. A store adds
// only what is new, but a reader that falls behind reads the whole object
// again, so a big log is stored less often: once per interval for every
// 8 MiB it holds, at least every 2 minutes (steps' ends store it at once
// anyway). Late readers get the rest from the live tail.
func (l *jobLog) keepStored(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if now.Sub(last) < storeInterval(every, l.storedSize())-every/2 { // ticks come about every apart
				continue
			}
			last = now
			_ = l.store(ctx)
		}
	}
}

// storeInterval is how long keepStored waits between stores of a log of size bytes.
func storeInterval(every time.Duration, size int64) time.Duration {
	return min(every*time.Duration(1+size/(8<<20)), 2*time.Minute)
}

func (l *jobLog) storedSize() int64 {
	l.storeMu.Lock()
	defer l.storeMu.Unlock()
	return l.stored
}

func (l *jobLog) close() {
	_ = l.f.Close()
	_ = os.Remove(l.f.Name())
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
