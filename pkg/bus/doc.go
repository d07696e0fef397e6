// Package bus is shiploop's event bus on NATS JetStream.
//
// Every event is a protobuf message published with CloudEvents 1.0
// binary-mode headers (ce-id, ce-type, ce-source, ...) on a low-cardinality
// subject "shiploop.evt.<domain>.<event>.<repository token>", with
// Nats-Msg-Id = ce-id so that a retried publish is stored once.
//
// Delivery is at-least-once, made exactly-once in effect on the consuming
// side: Consume runs a handler inside a database transaction that also
// records the event id in an inbox table, and acks only after that
// transaction commits. A handler that keeps failing is retried with back-off
// up to MaxDeliver times, then copied to the DLQ stream with the reason.
// Events a handler publishes go through an outbox table written in the same
// transaction, and a relay publishes them after commit, so a crash can
// neither lose nor invent an event.
//
// Streams: EVENTS (limits retention, shiploop.evt.>), JOBS (work queue,
// shiploop.job.>), DLQ (shiploop.dlq.> plus JetStream's MAX_DELIVERIES
// advisories). Live log lines use core NATS on shiploop.log.<job id>.
package bus
