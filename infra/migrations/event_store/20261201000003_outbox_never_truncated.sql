-- Vacuuming the outbox must never wait for its table lock: a vacuum that finds the table's
-- end empty tries to give those pages back, which takes an exclusive lock every committing
-- writer's trigger conflicts with. The pages stay; the next rows reuse them.
ALTER TABLE outbox SET (vacuum_truncate = false);
