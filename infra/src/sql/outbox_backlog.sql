-- What waits in the outbox, from the ends of its queue: a handful of index lookups however
-- long the queue is (a count(*) of a backlog of millions, while the broker is away, outlasts
-- the 2 s statement timeout). The relay publishes and deletes in id order, so what waits is
-- about the ids from the oldest publishable event (neither parked nor of an aggregate held
-- back behind a parked one) to the newest: exact when no insert rolled back meanwhile, and
-- above it by the ids such inserts took. Parked events (few, held for an operator) are
-- counted apart, by their partial index; the later events of their aggregates count among
-- what waits when they come after the oldest publishable one.
WITH head AS (SELECT o.id, e.recorded_at
                FROM outbox o
                JOIN events e USING (aggregate_type, aggregate_id, sequence)
               WHERE o.parked_because IS NULL
                 AND NOT EXISTS (
                     SELECT FROM outbox parked
                      WHERE parked.parked_because IS NOT NULL
                        AND parked.aggregate_type = o.aggregate_type
                        AND parked.aggregate_id = o.aggregate_id)
               ORDER BY o.id
               LIMIT 1),
     parked AS (SELECT id FROM outbox WHERE parked_because IS NOT NULL)
SELECT coalesce((SELECT max(id) FROM outbox) - (SELECT id FROM head) + 1
                    - (SELECT count(*) FROM parked WHERE id > (SELECT id FROM head)), 0)::bigint,
       coalesce((SELECT extract(epoch FROM now() - recorded_at)::float8 FROM head), 0),
       (SELECT count(*) FROM parked)
