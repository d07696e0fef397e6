package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestJobLogStoresAppend: each store adds only what is new to the same
// object, which stays whole and readable after every store; a job log
// written again under the same id (a retried job) replaces the object and
// its old chunks go.
func TestJobLogStoresAppend(t *testing.T) {
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx := t.Context()
	jobID := bus.NewID()
	l, err := newJobLog(b, t.TempDir(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	n := 0
	var nuid string
	for round := range 3 {
		for range 20_000 { // about 1.2 MB a round, ten chunks
			n++
			l.add("s", "stdout", fmt.Sprint(n), time.Now())
		}
		if err := l.store(ctx); err != nil {
			t.Fatal(err)
		}
		lines, err := b.StoredLog(ctx, jobID)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(lines) != n || lines[n-1].GetText() != fmt.Sprint(n) || lines[n-1].GetNumber() != uint64(n) {
			t.Fatalf("round %d: %d lines stored, want %d; last %v", round, len(lines), n, lines[len(lines)-1])
		}
		if round > 0 && l.nuid != nuid {
			t.Fatalf("round %d wrote a new object (%s, was %s), not appended", round, l.nuid, nuid)
		}
		nuid = l.nuid
	}
	if err := l.store(ctx); err != nil { // nothing new: nothing written
		t.Fatal(err)
	}

	again, err := newJobLog(b, t.TempDir(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	again.add("s", "stdout", "retried", time.Now())
	if err := again.store(ctx); err != nil {
		t.Fatal(err)
	}
	lines, err := b.StoredLog(ctx, jobID)
	if err != nil || len(lines) != 1 || lines[0].GetText() != "retried" {
		t.Fatalf("after the retry: %v, %v", lines, err)
	}
	s, err := b.JetStream().Stream(ctx, "OBJ_"+bus.LogBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLastMsgForSubject(ctx, fmt.Sprintf("$O.%s.C.%s", bus.LogBucket, nuid)); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the replaced object's chunks are still stored: %v", err)
	}
}

// TestBigLogComplete: a step printing more than every bound on the way
// (the follower's 50,000 lines behind a gap, its 4 MiB in-memory spool,
// many chunks, several stores) still reaches a live follower and a later
// reader whole: every line, in order, the last one last.
func TestBigLogComplete(t *testing.T) {
	if testing.Short() {
		t.Skip("prints 200,000 lines")
	}
	const lines = 200_000
	r := newRig(t)
	dir, sha := repo(t)
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b", Kind: "build", Repository: "acme/biglog", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{{Name: "chatty", Commands: []string{fmt.Sprintf("seq 1 %d", lines)}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	check := func(who string, got *int, l *eventsv1.LogLine) error {
		if l.GetStep() != "chatty" || l.GetStream() != "stdout" {
			return nil
		}
		*got++
		if want := fmt.Sprint(*got); l.GetText() != want {
			return fmt.Errorf("%s: line %d is %q, want %s", who, *got, l.GetText(), want)
		}
		return nil
	}
	followed := make(chan error, 1)
	var live int
	go func() {
		followed <- r.bus.FollowLog(ctx, job.JobId, 0, true, func(l *eventsv1.LogLine) error { return check("live follower", &live, l) })
	}()
	_, fin := r.run(job)
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || fin.GetLogKey() != job.JobId {
		t.Fatalf("job %v, log key %q: %s", fin.GetStatus(), fin.GetLogKey(), fin.GetError())
	}
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	if live != lines {
		t.Errorf("the live follower got %d of %d lines", live, lines)
	}
	var stored int
	if err := r.bus.FollowLog(ctx, job.JobId, 0, false, func(l *eventsv1.LogLine) error { return check("stored log", &stored, l) }); err != nil {
		t.Fatal(err)
	}
	if stored != lines {
		t.Errorf("the stored log has %d of %d lines", stored, lines)
	}
}
