-- Profiles, one row per registered user. Counters live in Redis.
CREATE TABLE users
(
    id               bigint PRIMARY KEY,
    name             text        NOT NULL,
    signature        text        NOT NULL DEFAULT '',
    -- NULL means the default image; URLs are made at read time from PUBLIC_BASE_URL.
    avatar           text,
    background_image text,
    registered_at    timestamptz NOT NULL
);

-- The last event of each aggregate applied to the Postgres read models, written in the same
-- transaction as the change it made: an event redelivered by Kafka is recognised and skipped.
CREATE TABLE applied_sequences
(
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Messages the projector could not understand, kept whole so they can be re-driven once the
-- cause is fixed, instead of stopping their partition.
CREATE TABLE dead_letters
(
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    key         bytea,
    payload     bytea,
    error       text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
