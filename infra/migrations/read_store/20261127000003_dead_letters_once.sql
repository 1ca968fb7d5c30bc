-- A message delivered again after a crash is kept once: projectors insert dead letters with
-- ON CONFLICT DO NOTHING, in the transaction that applies the rest of their batch.
DELETE FROM dead_letters later
 USING dead_letters earlier
 WHERE later.topic = earlier.topic
   AND later.partition = earlier.partition
   AND later."offset" = earlier."offset"
   AND later.id > earlier.id;

CREATE UNIQUE INDEX dead_letters_once ON dead_letters (topic, partition, "offset");
