package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// jobLog is a job's log on its way out: each line goes live on core NATS
// at once and into a spill file; the file is copied to the Object Store
// when a step ends, every 5 seconds while one runs, and when the job ends.
// Memory stays bounded however much a step prints.
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

// store copies what was written so far to the Object Store.
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
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: l.jobID}, io.NewSectionReader(l.f, 0, size)); err != nil {
		return fmt.Errorf("storing log of job %s: %w", l.jobID, err)
	}
	l.stored = size
	return nil
}

// keepStored stores the log every interval until ctx ends. Each store
// rewrites the whole object, so a big log is stored less often: once per
// interval for every 8 MiB it holds, at least every 2 minutes (steps' ends
// store it at once anyway). Late readers get the rest from the live tail.
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
