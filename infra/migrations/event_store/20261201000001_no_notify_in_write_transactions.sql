-- The outbox trigger no longer notifies. A transaction that runs pg_notify holds a lock shared
-- by the whole database from the start of its commit to the end, its WAL flush included, so
-- writers that notify commit one after another instead of sharing flushes: 64 clients
-- inserting one row each made 11,800 commits/s without it and 1,470 with it (pgbench, this
-- project's 2-core machine). The command API now wakes the relays after its commit, outside
-- the write's transaction (`infra::outbox::Doorbell`); the relay's poll remains the backstop.
CREATE OR REPLACE FUNCTION queue_event_for_publishing() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO outbox (aggregate_type, aggregate_id, sequence)
    VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
    RETURN NULL;
END
$$;
