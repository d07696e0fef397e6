package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ServiceBucket is the KV bucket where each running service advertises the
// addresses it answers on: key <service>.<instance>, value an Endpoint in
// JSON. Entries live ServiceTTL unless refreshed, so a process that died
// drops out without anyone cleaning up after it.
const ServiceBucket = "services"

// ServiceTTL is how long an advertisement lives; Advertise refreshes it
// every third of that.
const ServiceTTL = 30 * time.Second

// Endpoint is where one instance of a service answers.
type Endpoint struct {
	Service  string    `json:"service"`
	Instance string    `json:"instance"`
	GRPC     string    `json:"grpc,omitempty"`     // host:port
	HTTP     string    `json:"http_url,omitempty"` // http(s)://host:port
	Updated  time.Time `json:"updated"`
}

// Services opens (creating if needed) the service bucket.
func (b *Bus) Services(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := b.js.KeyValue(ctx, ServiceBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: ServiceBucket, Description: "where each running service answers (gRPC, HTTP)", TTL: ServiceTTL,
			Storage: jetstream.MemoryStorage, Replicas: b.opts.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("bus: service bucket: %w", err)
	}
	return kv, nil
}

// Advertise puts eps in the service bucket and refreshes them until ctx
// ends, then deletes them. A failed put is retried at the next refresh:
// NATS being away for a while only delays an advertisement.
func (b *Bus) Advertise(ctx context.Context, eps []Endpoint) {
	var kv jetstream.KeyValue
	put := func() {
		if kv == nil {
			var err error
			if kv, err = b.Services(ctx); err != nil {
				return
			}
		}
		for _, ep := range eps {
			ep.Updated = time.Now().UTC()
			data, _ := json.Marshal(ep)
			_, _ = kv.Put(ctx, ep.Service+"."+ep.Instance, data)
		}
	}
	put()
	t := time.NewTicker(ServiceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if kv != nil {
				dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				for _, ep := range eps {
					_ = kv.Delete(dctx, ep.Service+"."+ep.Instance)
				}
				cancel()
			}
			return
		case <-t.C:
			put()
		}
	}
}

// ErrNoEndpoint is returned by Lookup when no instance of a service is
// advertised.
var ErrNoEndpoint = errors.New("no instance advertised")

// Lookup returns the most recently refreshed advertised instance of a
// service.
func (b *Bus) Lookup(ctx context.Context, service string) (Endpoint, error) {
	kv, err := b.Services(ctx)
	if err != nil {
		return Endpoint{}, err
	}
	lister, err := kv.ListKeysFiltered(ctx, service+".*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return Endpoint{}, fmt.Errorf("%s: %w in the %s bucket (is `shiploop serve %s` running?)", service, ErrNoEndpoint, ServiceBucket, service)
		}
		return Endpoint{}, fmt.Errorf("bus: listing %s endpoints: %w", service, err)
	}
	var best Endpoint
	for key := range lister.Keys() {
		if !strings.HasPrefix(key, service+".") {
			continue
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var ep Endpoint
		if json.Unmarshal(e.Value(), &ep) == nil && ep.Updated.After(best.Updated) {
			best = ep
		}
	}
	_ = lister.Stop()
	if best.Service == "" {
		return Endpoint{}, fmt.Errorf("%s: %w in the %s bucket (is `shiploop serve %s` running?)", service, ErrNoEndpoint, ServiceBucket, service)
	}
	return best, nil
}
