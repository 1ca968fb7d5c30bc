-- A dead-lettered event holds back its whole aggregate (topic and key): the projector
-- dead-letters that aggregate's later events after it instead of applying them past the gap,
-- and `projector redrive` applies them all, in order, once the projector can read them.
ALTER TABLE dead_letters ADD COLUMN redriven_at timestamptz;

CREATE INDEX dead_letters_held_back ON dead_letters (topic, key) WHERE redriven_at IS NULL;
