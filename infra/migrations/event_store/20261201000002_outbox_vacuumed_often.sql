-- The outbox is a queue: every row is deleted within moments of its insert. Left to the default
-- thresholds (a fifth of a table that is nearly always empty), autovacuum lets dead rows pile
-- up, and the relay's scan of the queue's index walks over them: after 1.4 million events it
-- took 12 ms a batch instead of 0.04. Vacuumed as soon as a thousand rows are dead, without
-- pausing. (The relay also vacuums it itself, for servers where autovacuum is off.)
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
