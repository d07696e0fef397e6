package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CancelBucket is the KV bucket of canceled jobs: key = job id, value = why.
// The builds service writes it (through the outbox, so a cancel commits with
// the build's state); agents read it before a job and watch it during one.
const CancelBucket = "job_cancel"

// Cancels opens (creating if needed) the cancel bucket. Entries expire
// after a day: a job is never queued that long.
func (b *Bus) Cancels(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := b.js.KeyValue(ctx, CancelBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: CancelBucket, Description: "canceled jobs", TTL: 24 * time.Hour,
			Storage: jetstream.FileStorage, Replicas: b.opts.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("bus: cancel bucket: %w", err)
	}
	return kv, nil
}

// CancelJob records, in the transaction's outbox, that a job is canceled.
// The bucket must exist (Bus.Cancels) before the relay publishes.
func (tx *Tx) CancelJob(jobID, reason string) error {
	_, err := tx.ExecContext(tx.ctx,
		`INSERT INTO bus_outbox (subject, msg_id, headers, data, created_at) VALUES ($1, $2, $3, $4, $5)`,
		"$KV."+CancelBucket+"."+jobID, "cancel."+jobID, `{"Nats-Msg-Id":["cancel.`+jobID+`"]}`, []byte(reason), time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("outbox: canceling job %s: %w", jobID, err)
	}
	tx.queued++
	return nil
}

// JobFilter is the subject filter of every job of a kind (build, test,
// deploy), whatever its pool and repository.
func JobFilter(kind string) string { return jobPrefix + kind + ".>" }
