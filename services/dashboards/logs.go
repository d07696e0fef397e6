package dashboards

import (
	"context"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// storedLog reads a job's log from the Object Store: nil when there is none yet.
func (s *Service) storedLog(ctx context.Context, jobID string) []*eventsv1.LogLine {
	lines, _ := s.bus.StoredLog(ctx, jobID)
	return lines
}

// followLog sends a job's lines numbered after `after`, in order and each
// once, until the end marker or ctx ends (bus.FollowLog).
func (s *Service) followLog(ctx context.Context, jobID string, after uint64, send func(*eventsv1.LogLine) error) error {
	return s.bus.FollowLog(ctx, jobID, after, true, send)
}
