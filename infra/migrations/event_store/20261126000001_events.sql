-- The event store of postgres-es, with one column more: when the event was recorded.
-- postgres-es names the columns it inserts, so `recorded_at` takes its default.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    recorded_at    timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Ids handed to new users. Below 2^53 so that every JSON reader holds them exactly.
CREATE SEQUENCE user_ids AS bigint MINVALUE 1 MAXVALUE 9007199254740991;

-- The outbox: every event inserted is queued here in the inserting transaction itself, so an
-- event is committed if and only if it is queued for publishing. The relay publishes queued
-- events in id order and deletes them once the broker has acknowledged them. It never keeps a
-- high-water mark, so a transaction that commits late (with a lower id than rows already
-- published) is not skipped. Per aggregate, ids follow sequences: event n+1 can only be
-- inserted after event n committed, since the command that made it loaded event n.
CREATE TABLE outbox
(
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL,
    FOREIGN KEY (aggregate_type, aggregate_id, sequence)
        REFERENCES events (aggregate_type, aggregate_id, sequence)
);

CREATE FUNCTION queue_event_for_publishing() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO outbox (aggregate_type, aggregate_id, sequence)
    VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
    -- Wakes the relay at commit; notifications of one transaction are folded into one.
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_queue_for_publishing
    AFTER INSERT
    ON events
    FOR EACH ROW
EXECUTE FUNCTION queue_event_for_publishing();

-- An event the relay cannot publish (a payload that is not an event) is parked here with the
-- reason, rather than holding back every event queued after it.
ALTER TABLE outbox ADD COLUMN parked_because text;
