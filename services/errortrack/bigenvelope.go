package errortrack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// bigEnvelopeBucket holds envelopes larger than a NATS message (attachments
// up to Relay's 100 MiB): the ERRORS_INGEST message names the object
// instead of carrying the body. An object is deleted bigEnvelopeGrace
// after its envelope was handled (the handler cannot see its transaction
// commit; a redelivery after a failed commit finds the body still there),
// and the bucket's TTL removes what a crash left behind.
const (
	bigEnvelopeBucket = "errortrack-envelopes"
	bigEnvelopeTTL    = 7 * 24 * time.Hour
	bigEnvelopeGrace  = 10 * time.Minute
	// messageHeadroom leaves room in a message for the event's headers
	// and the rest of IngestedEnvelope.
	messageHeadroom = 64 << 10
)

type bigEnvelopeStore struct {
	sync.Mutex
	obs jetstream.ObjectStore
	// maxMessage overrides the NATS max payload (tests).
	maxMessage int64
}

// tooBigForMessage reports whether an envelope of n bytes needs the bucket.
func (s *Service) tooBigForMessage(n int) bool {
	mp := s.bus.Conn().MaxPayload()
	if s.bigEnvelopes.maxMessage > 0 {
		mp = s.bigEnvelopes.maxMessage
	}
	return mp > 0 && int64(n) > mp-messageHeadroom
}

func (s *Service) bigEnvelopeBucket(ctx context.Context) (jetstream.ObjectStore, error) {
	s.bigEnvelopes.Lock()
	defer s.bigEnvelopes.Unlock()
	if s.bigEnvelopes.obs != nil {
		return s.bigEnvelopes.obs, nil
	}
	js := s.bus.JetStream()
	obs, err := js.ObjectStore(ctx, bigEnvelopeBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bigEnvelopeBucket,
			Description: "Sentry envelopes too large for a message, until errortrack stores them",
			Storage:     jetstream.FileStorage, Replicas: s.cfg.Replicas, MaxBytes: s.cfg.IngestMaxBytes, TTL: bigEnvelopeTTL})
		if errors.Is(err, jetstream.ErrBucketExists) {
			obs, err = js.ObjectStore(ctx, bigEnvelopeBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", bigEnvelopeBucket, err)
	}
	s.bigEnvelopes.obs = obs
	return obs, nil
}

// putBigEnvelope stores body under name and returns the name.
func (s *Service) putBigEnvelope(ctx context.Context, name string, body []byte) (string, error) {
	obs, err := s.bigEnvelopeBucket(ctx)
	if err != nil {
		return "", err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := obs.PutBytes(pctx, name, body); err != nil {
		return "", err
	}
	return name, nil
}

// envelopeBody is the envelope's body: in the message, or in the bucket.
// A missing object (expired, or deleted after an earlier delivery was
// stored) is permanent: there is nothing to retry.
func (s *Service) envelopeBody(ctx context.Context, in *errortrackv1.IngestedEnvelope) ([]byte, error) {
	name := in.GetBodyObject()
	if name == "" {
		return in.GetBody(), nil
	}
	obs, err := s.bigEnvelopeBucket(ctx)
	if err != nil {
		return nil, err
	}
	body, err := obs.GetBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, bus.Permanent(fmt.Errorf("envelope object %s is gone", name))
	}
	return body, err
}

// forgetBigEnvelope deletes a handled envelope's object after the grace.
func (s *Service) forgetBigEnvelope(name string) {
	time.AfterFunc(bigEnvelopeGrace, func() {
		obs, err := s.bigEnvelopeBucket(context.Background())
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := obs.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			s.log.Warn("deleting a stored large envelope", "object", name, "err", err)
		}
	})
}
