package cdevents

import (
	"net/http"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/services/cdevents/inbound"
)

// ErrNotCloudEvent is a request that is neither a structured nor a binary
// CloudEvent.
var ErrNotCloudEvent = inbound.ErrNotCloudEvent

// Envelope is the CloudEvents side of a received CDEvent.
type Envelope = inbound.Envelope

// ParseHTTP reads a CloudEvent from an HTTP request: inbound.ParseHTTP.
func ParseHTTP(h http.Header, body []byte) (Envelope, []byte, error) {
	return inbound.ParseHTTP(h, body)
}

// Inbound maps a validated CDEvent from another tool to the bus event
// shiploop publishes for it (inbound.Map says which).
func Inbound(raw []byte) (bus.Event, error) {
	ev, err := inbound.Map(raw)
	if err != nil {
		return bus.Event{}, err
	}
	return bus.Event{ID: ev.ID, Type: ev.Type, Repository: ev.Repository, Subject: ev.Subject, ChainID: ev.ChainID, Time: ev.Time, Data: ev.Data}, nil
}
