-- Events that came before an earlier event of their aggregate. An aggregate's events are
-- applied in sequence order only (n+1 after n): one that finds its predecessor missing waits
-- here, and holds its aggregate back, until the missing event comes; it is then applied, in
-- order, in the same transaction. A gap should never open (an aggregate's events share a
-- partition, published in order), so rows here mean something went wrong upstream: partitions
-- added to a live topic, a message the broker lost, an outbox row deleted by hand. Operators
-- see them with `projector waiting` (docs/events.md says how to close a gap).
CREATE TABLE waiting_events
(
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    -- The published event, as JSON.
    event          text        NOT NULL,
    waiting_since  timestamptz NOT NULL DEFAULT now(),
    -- Applied to the Postgres read models; the row is removed once Redis has it too (until
    -- then, a repeat of the event that released it carries it to Redis again).
    released_at    timestamptz,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
