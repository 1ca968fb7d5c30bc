-- Per partition, the offset of the last message the projectors handled (applied, dead-lettered
-- or ignored), written in the transaction that applies the batch. Redis keeps the same record
-- (`offsets`) with its own changes, and the Redis read models have lost data when theirs is
-- behind what the projectors had handled (a Redis restored from an older snapshot): they are
-- then rebuilt from these tables, which this record comes with.
CREATE TABLE applied_offsets
(
    topic     text    NOT NULL,
    partition integer NOT NULL,
    "offset"  bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
