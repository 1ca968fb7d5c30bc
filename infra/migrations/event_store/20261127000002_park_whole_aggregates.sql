-- An aggregate with a parked event is held back whole: its later events stay queued until the
-- parked one is released (`UPDATE outbox SET parked_because = NULL ...`), so consumers never
-- see an aggregate's events with a gap.
CREATE INDEX outbox_parked_aggregates ON outbox (aggregate_type, aggregate_id)
    WHERE parked_because IS NOT NULL;
