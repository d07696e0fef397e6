CREATE TABLE IF NOT EXISTS bus_inbox (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at {{bigint}} NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE IF NOT EXISTS bus_outbox (
    id         {{serial_pk}},
    subject    TEXT NOT NULL,
    msg_id     TEXT NOT NULL,
    headers    TEXT NOT NULL,
    data       {{bytes}} NOT NULL,
    created_at {{bigint}} NOT NULL
);
