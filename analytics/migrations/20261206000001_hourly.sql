-- Hourly activity, by hour of event time (`occurred_at` truncated to the hour, UTC). Every
-- table is written by `analytics` alone, in the transaction that records which events it has
-- seen (`seen_aggregates`), so each event counts once however often it is delivered.

CREATE TABLE hourly_counts (
    hour timestamptz PRIMARY KEY,
    -- Every event applied in the hour, whatever its type.
    events bigint NOT NULL DEFAULT 0,
    videos_published bigint NOT NULL DEFAULT 0,
    likes bigint NOT NULL DEFAULT 0,
    -- Likes taken back in the hour (of a like given in that hour or earlier).
    unlikes bigint NOT NULL DEFAULT 0,
    comments_posted bigint NOT NULL DEFAULT 0,
    comments_deleted bigint NOT NULL DEFAULT 0,
    follows bigint NOT NULL DEFAULT 0,
    unfollows bigint NOT NULL DEFAULT 0,
    messages_sent bigint NOT NULL DEFAULT 0,
    sign_ups bigint NOT NULL DEFAULT 0
);

-- Who wrote anything in the hour: counted distinct, so kept one row per user and hour.
CREATE TABLE hourly_active_users (
    hour timestamptz NOT NULL,
    user_id bigint NOT NULL,
    PRIMARY KEY (hour, user_id)
);

-- Likes given and taken back per video and hour: the top ten of an hour are read from it.
CREATE TABLE hourly_video_likes (
    hour timestamptz NOT NULL,
    video_id bigint NOT NULL,
    likes bigint NOT NULL DEFAULT 0,
    unlikes bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, video_id)
);

-- Which events of each aggregate have been counted: every sequence up to `through`, and the
-- few past a gap in `beyond` (an aggregate's events may come out of order after a partition
-- change; counting does not care about order, only about counting each once). One row per
-- aggregate rather than one per event.
CREATE TABLE seen_aggregates (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    through bigint NOT NULL DEFAULT 0,
    beyond bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Messages that were not counted: not an event envelope, or an event type or version this
-- build does not know (a newer contract), or a known one whose payload lacks a field. Keyed by
-- event id (by position for a message that is not an event), so a repeat is not listed twice.
CREATE TABLE skipped_messages (
    id text PRIMARY KEY,
    topic text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    event_type text,
    event_version bigint,
    occurred_at timestamptz,
    reason text NOT NULL,
    skipped_at timestamptz NOT NULL DEFAULT now()
);

-- The hourly numbers as `analytics report` prints them, for dashboards and ad hoc queries.
CREATE VIEW hourly AS
SELECT c.*,
       c.likes - c.unlikes AS net_likes,
       (SELECT count(*) FROM hourly_active_users a WHERE a.hour = c.hour) AS active_users
FROM hourly_counts c;

-- The ten most liked videos of each hour by net likes (likes given minus taken back in the
-- hour), ties broken by more likes given, then by the older video (smaller id).
CREATE VIEW hourly_top_videos AS
SELECT hour, rank, video_id, net_likes, likes, unlikes
FROM (
    SELECT hour, video_id, likes - unlikes AS net_likes, likes, unlikes,
           row_number() OVER (
               PARTITION BY hour ORDER BY likes - unlikes DESC, likes DESC, video_id
           ) AS rank
    FROM hourly_video_likes
    WHERE likes > unlikes
) ranked
WHERE rank <= 10;
