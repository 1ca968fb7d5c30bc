-- What waits in the outbox, from the ends of its queue: a handful of index lookups however
-- long the queue is (a count(*) of a backlog of millions, while the broker is away, outlasts
-- the 2 s statement timeout). The relay publishes and deletes in id order, so what waits is
-- about the ids from the oldest unparked one to the newest: exact when no insert rolled back
-- meanwhile, and above it by the ids such inserts took. Parked events (few, held for an
-- operator) are counted apart, by their partial index.
WITH head AS (SELECT o.id, e.recorded_at
                FROM outbox o
                JOIN events e USING (aggregate_type, aggregate_id, sequence)
               WHERE o.parked_because IS NULL
               ORDER BY o.id
               LIMIT 1),
     parked AS (SELECT id FROM outbox WHERE parked_because IS NOT NULL)
SELECT coalesce((SELECT max(id) FROM outbox) - (SELECT id FROM head) + 1
                    - (SELECT count(*) FROM parked WHERE id > (SELECT id FROM head)), 0)::bigint,
       coalesce((SELECT extract(epoch FROM now() - recorded_at)::float8 FROM head), 0),
       (SELECT count(*) FROM parked)
