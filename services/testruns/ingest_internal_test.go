package testruns

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestStoreUnavailable: a report read that timed out or found no NATS
// responder (a node lost, an election) is handled again; a report that is
// not there is recorded as the run's error. TestNATSClusterNodeKilled
// (tests/e2e) saw gates fail when a timeout was taken for the second.
func TestStoreUnavailable(t *testing.T) {
	for _, err := range []error{context.DeadlineExceeded, nats.ErrTimeout, nats.ErrNoResponders, fmt.Errorf("get: %w", context.DeadlineExceeded), nats.ErrConnectionClosed} {
		if !storeUnavailable(err) {
			t.Errorf("storeUnavailable(%v) = false, want the event handled again", err)
		}
	}
	for _, err := range []error{jetstream.ErrObjectNotFound, errors.New("digest mismatch"), jetstream.ErrBucketNotFound} {
		if storeUnavailable(err) {
			t.Errorf("storeUnavailable(%v) = true, want the report's own failure", err)
		}
	}
}
