package bus

// SecretsSubject is the core NATS subject on which the builds service
// answers requests for secret values (ResolveSecretsRequest /
// ResolveSecretsResponse in proto/shiploop/events/v1/secrets.proto). Agents
// ask there when a job's steps name secrets the job does not carry: test
// and deploy jobs, queued by services that never hold a value. It is
// request/reply only; no stream captures it.
const SecretsSubject = "shiploop.secrets.resolve"
