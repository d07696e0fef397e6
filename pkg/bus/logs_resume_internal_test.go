package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// appendingLog writes a job's log object as the agent does
// (services/agent/joblog.go): it only grows, by chunks on the object's
// chunk subject, the last of each append short, then a meta that counts them.
type appendingLog struct {
	js        jetstream.JetStream
	job, nuid string
	chunkSize int
	buf       bytes.Buffer // all of the log
	stored    int
	chunks    uint32
	digest    hash.Hash
}

func (a *appendingLog) store(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	data := a.buf.Bytes()
	for a.stored < len(data) {
		n := min(a.chunkSize, len(data)-a.stored)
		if _, err := a.js.Publish(ctx, fmt.Sprintf("$O.%s.C.%s", LogBucket, a.nuid), data[a.stored:a.stored+n]); err != nil {
			t.Error(err)
			return
		}
		a.digest.Write(data[a.stored : a.stored+n])
		a.stored += n
		a.chunks++
	}
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: a.job, Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(a.chunkSize)}},
		Bucket:     LogBucket, NUID: a.nuid, Size: uint64(len(data)), Chunks: a.chunks, Digest: jetstream.GetObjectDigestValue(a.digest),
	}
	meta := nats.NewMsg(fmt.Sprintf("$O.%s.M.%s", LogBucket, base64.URLEncoding.EncodeToString([]byte(a.job))))
	meta.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	meta.Data, _ = json.Marshal(info)
	if _, err := a.js.PublishMsg(ctx, meta); err != nil {
		t.Error(err)
	}
}

// A follower that falls behind the live tail (its buffer overflows while
// it is slow) gets the whole log, in order and each line once, and its
// reads of the store fetch only the chunks after what it had read: never
// the whole object again.
func TestFollowLogRereadsOnlyNewChunks(t *testing.T) {
	e, err := StartEmbedded(EmbeddedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b := &Bus{nc: nc, js: js}
	if _, err := b.LogStore(t.Context()); err != nil {
		t.Fatal(err)
	}
	liveLogBuffer = 8
	var mu sync.Mutex
	var fetched []uint64
	logChunkFetched = func(job string, seq uint64) {
		mu.Lock()
		fetched = append(fetched, seq)
		mu.Unlock()
	}
	t.Cleanup(func() { liveLogBuffer, logChunkFetched = 64<<10, nil })

	const job, rounds, perRound = "job-1", 5, 4000
	w := &appendingLog{js: js, job: job, nuid: "n1", chunkSize: 4 << 10, digest: sha256.New()}
	line := func(n uint64, stream string) {
		l := &eventsv1.LogLine{JobId: job, Step: "s", Number: n, Stream: stream, Text: fmt.Sprintf("line %d of the job's log", n)}
		if err := EncodeLog(&w.buf, l); err != nil {
			t.Error(err)
		}
		_ = b.PublishLog(job, l)
	}
	// Round r writes lines r*perRound+1 .. (r+1)*perRound, live and to the
	// store in two appends; the follower waits at the last line of each
	// round until the next is written, so that its live buffer overflows.
	reached, resume := make(chan uint64), make(chan struct{})
	writer := make(chan struct{})
	var storedChunks []uint32 // the object's chunks when the follower resumes
	go func() {
		defer close(writer)
		for r := range uint64(rounds) {
			if r > 0 {
				<-reached
			}
			for n := r*perRound + 1; n <= (r+1)*perRound; n++ {
				line(n, "stdout")
				if n == r*perRound+perRound/2 {
					w.store(t)
				}
			}
			if r == rounds-1 {
				line(rounds*perRound+1, "end")
			}
			w.store(t)
			mu.Lock()
			storedChunks = append(storedChunks, w.chunks)
			mu.Unlock()
			if r > 0 {
				resume <- struct{}{}
			}
		}
	}()

	var got []uint64
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err = b.FollowLog(ctx, job, 0, true, func(l *eventsv1.LogLine) error {
		got = append(got, l.GetNumber())
		if n := l.GetNumber(); n%perRound == 0 && n < rounds*perRound {
			reached <- n
			<-resume
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	<-writer
	if len(got) != rounds*perRound {
		t.Fatalf("got %d lines, want %d", len(got), rounds*perRound)
	}
	for i, n := range got {
		if n != uint64(i)+1 {
			t.Fatalf("line %d is number %d: out of order or repeated", i+1, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[uint64]int{}
	for _, s := range fetched {
		seen[s]++
	}
	// The agent stores whole lines, so a read stops at a chunk's end and
	// the next starts at the next chunk: each chunk is fetched once, though
	// the follower read the store again after every round.
	total := w.chunks
	if len(seen) != int(total) {
		t.Fatalf("fetched %d distinct chunks of %d: the follower never fell behind, or missed some", len(seen), total)
	}
	if len(fetched) != int(total) {
		t.Fatalf("fetched %d chunks of an object of %d: more than the missing ones", len(fetched), total)
	}
	t.Logf("object of %d chunks (%v after each round), %d fetches", total, storedChunks, len(fetched))
}
