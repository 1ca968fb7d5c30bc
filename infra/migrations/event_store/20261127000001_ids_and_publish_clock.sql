-- Ids of videos, comments and messages, made by the server. Below 2^53 like user ids.
CREATE SEQUENCE video_ids AS bigint MINVALUE 1 MAXVALUE 9007199254740991;
CREATE SEQUENCE comment_ids AS bigint MINVALUE 1 MAXVALUE 9007199254740991;
CREATE SEQUENCE message_ids AS bigint MINVALUE 1 MAXVALUE 9007199254740991;

-- The feed pages by publish time alone (`latest_time` / `next_time`), so no two videos may
-- share a millisecond: each publish takes the later of the clock and the last time plus one.
CREATE TABLE publish_clock
(
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_publish bigint NOT NULL
);
INSERT INTO publish_clock (last_publish) VALUES (0);
