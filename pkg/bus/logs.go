package bus

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protodelim"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// LogBucket is the Object Store bucket holding finished jobs' logs, one
// object per job id: a sequence of length-delimited LogLine messages.
const LogBucket = "logs"

// LogStore opens (creating if needed) the log bucket.
func (b *Bus) LogStore(ctx context.Context) (jetstream.ObjectStore, error) {
	obs, err := b.js.ObjectStore(ctx, LogBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = b.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: LogBucket, Description: "finished job logs", Storage: jetstream.FileStorage, Replicas: b.opts.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("bus: log store: %w", err)
	}
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
