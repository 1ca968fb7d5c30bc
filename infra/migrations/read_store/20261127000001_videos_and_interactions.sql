-- Lists the query API reads by index, and everything needed to rebuild the Redis read models
-- (cards, counters, membership, the feed). Times are epoch milliseconds, as in the events.

CREATE TABLE videos
(
    id           bigint PRIMARY KEY,
    author_id    bigint NOT NULL,
    title        text   NOT NULL,
    video_key    text   NOT NULL,
    cover_key    text,
    published_at bigint NOT NULL UNIQUE
);
CREATE INDEX videos_by_author ON videos (author_id, published_at DESC);

CREATE TABLE likes
(
    user_id  bigint NOT NULL,
    video_id bigint NOT NULL,
    liked_at bigint NOT NULL,
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX likes_by_user ON likes (user_id, liked_at DESC);
CREATE INDEX likes_by_video ON likes (video_id);

CREATE TABLE comments
(
    id         bigint PRIMARY KEY,
    video_id   bigint NOT NULL,
    user_id    bigint NOT NULL,
    content    text   NOT NULL,
    posted_at  bigint NOT NULL,
    deleted_at bigint
);
CREATE INDEX comments_by_video ON comments (video_id, posted_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE follows
(
    follower_id bigint NOT NULL,
    followee_id bigint NOT NULL,
    followed_at bigint NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);
CREATE INDEX follows_by_follower ON follows (follower_id, followed_at DESC);
CREATE INDEX follows_by_followee ON follows (followee_id, followed_at DESC);

-- A conversation is the pair (low_id, high_id), the smaller user id first.
CREATE TABLE messages
(
    id        bigint PRIMARY KEY,
    low_id    bigint NOT NULL,
    high_id   bigint NOT NULL,
    from_id   bigint NOT NULL,
    to_id     bigint NOT NULL,
    content   text   NOT NULL,
    sent_at   bigint NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (low_id, high_id, sent_at);
