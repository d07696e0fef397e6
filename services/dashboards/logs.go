package dashboards

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// storedLog reads a job's log from the Object Store: nil when there is none yet.
func (s *Service) storedLog(ctx context.Context, jobID string) []*eventsv1.LogLine {
	obs, err := s.bus.JetStream().ObjectStore(ctx, bus.LogBucket)
	if err != nil {
		return nil
	}
	data, err := obs.GetBytes(ctx, jobID)
	if err != nil {
		return nil
	}
	lines, _ := bus.DecodeLog(data)
	return lines
}

// followLog sends a job's lines numbered after `after`, in order and each
// once, until the end marker or ctx ends: live lines from core NATS, gaps
// (and a job that ended before we subscribed) filled from the store, which
// the agent refreshes every second.
func (s *Service) followLog(ctx context.Context, jobID string, after uint64, send func(*eventsv1.LogLine) error) error {
	live := make(chan *nats.Msg, 4096)
	sub, err := s.bus.Conn().ChanSubscribe(bus.LogSubject(jobID), live)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
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
	fromStore := func() (bool, error) {
		for _, l := range s.storedLog(ctx, jobID) {
			if l.GetNumber() > sent {
				pending[l.GetNumber()] = l
			}
		}
		return deliver()
	}
	if end, err := fromStore(); end || err != nil {
		return err
	}
	refresh := time.NewTicker(500 * time.Millisecond)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-live:
			l := &eventsv1.LogLine{}
			if proto.Unmarshal(m.Data, l) != nil || l.GetNumber() <= sent {
				continue
			}
			pending[l.GetNumber()] = l
			if end, err := deliver(); end || err != nil {
				return err
			}
		case <-refresh.C:
			if end, err := fromStore(); end || err != nil {
				return err
			}
		}
	}
}
