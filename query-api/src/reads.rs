//! The reads behind the routes: lists from the Postgres read models, each by an index and
//! bounded, hydrated into cards from Redis in a constant number of round trips.

use domain::{UserId, VideoId};
use http_api::cards::{Cards, CommentCard, UserCard, VideoCard};
use infra::redis_store::Keys;
use serde::Serialize;

/// The most items a list answers with. The client does not page lists (only the feed).
pub const LIST_LIMIT: i64 = 1000;
/// Videos in one page of the feed.
pub const FEED_PAGE: usize = 30;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("read store: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("read store connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("media store: {0}")]
    Media(#[from] object_store::Error),
    /// Redis lost its read models (restarted empty, say) and they are not rebuilt yet: what
    /// they lack may well exist.
    #[error("the Redis read models are not whole (being rebuilt)")]
    NotWhole,
}

impl ReadError {
    /// Whether a read store failed to answer (no connection in time, a statement cancelled
    /// by its timeout, a server shutting down, a Redis reply that never came) rather than
    /// answered something we could not use: a dependency failure, to be answered with 503.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Pool(_) => true,
            Self::Postgres(error) => {
                error.is_closed()
                    || error
                        .code()
                        .is_some_and(|state| infra::sqlstate_is_unavailable(state.code()))
            }
            // Timeouts, refused and dropped connections, and a Redis loading its data.
            Self::Redis(error) => infra::redis_store::is_unwell(error),
            // An object that is not there is answered before it gets here (404): any other
            // failure of the media store is the store's.
            Self::Media(_) => true,
            Self::NotWhole => true,
        }
    }
}

/// The `FriendUser` object: a user card with the latest message exchanged.
#[derive(Debug, Serialize)]
pub struct FriendCard {
    #[serde(flatten)]
    pub user: UserCard,
    pub message: String,
    #[serde(rename = "msgType")]
    pub msg_type: i64,
}

/// The `Message` object.
#[derive(Debug, Serialize)]
pub struct MessageCard {
    pub id: i64,
    pub to_user_id: i64,
    pub from_user_id: i64,
    pub content: String,
    pub create_time: i64,
}

pub struct Reads {
    pool: deadpool_postgres::Pool,
    cards: Cards,
}

impl Reads {
    pub fn new(pool: deadpool_postgres::Pool, cards: Cards) -> Self {
        Self { pool, cards }
    }

    pub fn cards(&self) -> &Cards {
        &self.cards
    }

    /// Up to a page of videos published strictly before `before` (epoch ms), newest first.
    /// Publish times are unique, so the oldest one's time is an exact cursor.
    pub async fn feed(
        &self,
        viewer: Option<UserId>,
        before: i64,
    ) -> Result<Vec<VideoCard>, ReadError> {
        // The newest page is the same for every viewer until a video is published, while
        // `before` is each client's clock: asked for with fixed arguments, it is served from
        // the client-side cache. It is the answer when all of it is older than `before`.
        let keys = self.cards.current_keys().await?;
        let newest: Vec<(i64, f64)> = redis::cmd("ZREVRANGE")
            .arg(keys.feed())
            .arg(0)
            .arg(FEED_PAGE - 1)
            .arg("WITHSCORES")
            .set_cache_config(infra::redis_store::cached())
            .query_async(&mut self.cards.redis())
            .await?;
        if newest.is_empty() {
            self.whole(&keys).await?;
        }
        if newest.iter().all(|(_, at)| (*at as i64) < before) {
            let ids: Vec<i64> = newest.into_iter().map(|(id, _)| id).collect();
            return Ok(self.cards.videos_in(&keys, viewer, &ids).await?);
        }
        let ids: Vec<i64> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(keys.feed())
            .arg(format!("({before}"))
            .arg("-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(FEED_PAGE)
            .query_async(&mut self.cards.redis())
            .await?;
        Ok(self.cards.videos_in(&keys, viewer, &ids).await?)
    }

    /// Whether video `video` exists; unavailable, rather than no, while the read models are
    /// not whole.
    pub async fn video_exists(&self, video: VideoId) -> Result<bool, ReadError> {
        let keys = self.cards.current_keys().await?;
        if !self
            .cards
            .videos_in(&keys, None, &[video.get()])
            .await?
            .is_empty()
        {
            return Ok(true);
        }
        self.whole(&keys).await?;
        Ok(false)
    }

    /// User `user`'s card as `viewer` sees it; None only when the read models are whole and
    /// have no such user (never "no such user" while Redis is being rebuilt).
    pub async fn user(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> Result<Option<UserCard>, ReadError> {
        let keys = self.cards.current_keys().await?;
        let mut cards = self.cards.users_in(&keys, viewer, &[user.get()]).await?;
        if let Some(card) = cards.remove(&user.get()) {
            return Ok(Some(card));
        }
        self.whole(&keys).await?;
        Ok(None)
    }

    /// Fails as unavailable unless the read models of `keys` are whole.
    async fn whole(&self, keys: &Keys) -> Result<(), ReadError> {
        if self.cards.are_whole(keys).await? {
            Ok(())
        } else {
            Err(ReadError::NotWhole)
        }
    }

    async fn ids(&self, sql: &str, id: i64) -> Result<Vec<i64>, ReadError> {
        let client = self.pool.get().await?;
        let rows = client.query(sql, &[&id, &LIST_LIMIT]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Videos `author` published, newest first.
    pub async fn published(
        &self,
        viewer: Option<UserId>,
        author: UserId,
    ) -> Result<Vec<VideoCard>, ReadError> {
        let ids = self
            .ids(
                "SELECT id FROM videos WHERE author_id = $1 ORDER BY published_at DESC LIMIT $2",
                author.get(),
            )
            .await?;
        Ok(self.cards.videos(viewer, &ids).await?)
    }

    /// Videos `user` likes, most recently liked first.
    pub async fn liked(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> Result<Vec<VideoCard>, ReadError> {
        let ids = self
            .ids(
                "SELECT video_id FROM likes WHERE user_id = $1 ORDER BY liked_at DESC LIMIT $2",
                user.get(),
            )
            .await?;
        Ok(self.cards.videos(viewer, &ids).await?)
    }

    /// Users `user` follows, most recent first.
    pub async fn following(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> Result<Vec<UserCard>, ReadError> {
        let ids = self
            .ids(
                "SELECT followee_id FROM follows WHERE follower_id = $1
                 ORDER BY followed_at DESC LIMIT $2",
                user.get(),
            )
            .await?;
        self.users_in_order(viewer, &ids).await
    }

    /// Users following `user`, most recent first.
    pub async fn followers(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> Result<Vec<UserCard>, ReadError> {
        let ids = self
            .ids(
                "SELECT follower_id FROM follows WHERE followee_id = $1
                 ORDER BY followed_at DESC LIMIT $2",
                user.get(),
            )
            .await?;
        self.users_in_order(viewer, &ids).await
    }

    async fn users_in_order(
        &self,
        viewer: Option<UserId>,
        ids: &[i64],
    ) -> Result<Vec<UserCard>, ReadError> {
        let mut cards = self.cards.users(viewer, ids).await?;
        Ok(ids.iter().filter_map(|id| cards.remove(id)).collect())
    }

    /// Users who follow `user` and whom `user` follows, each with the latest message
    /// `viewer` exchanged with them (and `msg_type` from `viewer`'s side): in another user's
    /// list, never a message of that user's, only one the viewer took part in.
    pub async fn friends(
        &self,
        viewer: UserId,
        user: UserId,
    ) -> Result<Vec<FriendCard>, ReadError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT mine.followee_id, latest.content, latest.from_id
                   FROM follows mine
                   JOIN follows theirs ON theirs.follower_id = mine.followee_id
                                      AND theirs.followee_id = mine.follower_id
                   LEFT JOIN LATERAL (
                        SELECT content, from_id FROM messages
                         WHERE low_id = LEAST($3, mine.followee_id)
                           AND high_id = GREATEST($3, mine.followee_id)
                         ORDER BY sent_at DESC LIMIT 1) latest ON true
                  WHERE mine.follower_id = $1
                  ORDER BY mine.followed_at DESC
                  LIMIT $2",
                &[&user.get(), &LIST_LIMIT, &viewer.get()],
            )
            .await?;
        drop(client);
        let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        let mut cards = self.cards.users(Some(viewer), &ids).await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let user_card = cards.remove(&row.get::<_, i64>(0))?;
                let from: Option<i64> = row.get(2);
                Some(FriendCard {
                    user: user_card,
                    message: row.get::<_, Option<String>>(1).unwrap_or_default(),
                    msg_type: i64::from(from == Some(viewer.get())),
                })
            })
            .collect())
    }

    /// Comments on `video` that are not deleted, newest first.
    pub async fn comments(
        &self,
        viewer: Option<UserId>,
        video: VideoId,
    ) -> Result<Vec<CommentCard>, ReadError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, user_id, content, posted_at FROM comments
                  WHERE video_id = $1 AND deleted_at IS NULL
                  ORDER BY posted_at DESC, id DESC LIMIT $2",
                &[&video.get(), &LIST_LIMIT],
            )
            .await?;
        drop(client);
        let mut authors: Vec<i64> = rows.iter().map(|row| row.get(1)).collect();
        authors.sort_unstable();
        authors.dedup();
        let cards = self.cards.users(viewer, &authors).await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(CommentCard {
                    id: row.get(0),
                    user: cards.get(&row.get::<_, i64>(1))?.clone(),
                    content: row.get(2),
                    create_date: self.cards.comment_date(row.get(3)),
                })
            })
            .collect())
    }

    /// Messages between `a` and `b` sent after `after` (epoch ms), oldest first.
    pub async fn chat(
        &self,
        a: UserId,
        b: UserId,
        after: i64,
    ) -> Result<Vec<MessageCard>, ReadError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, from_id, to_id, content, sent_at FROM messages
                  WHERE low_id = $1 AND high_id = $2 AND sent_at > $3
                  ORDER BY sent_at LIMIT $4",
                &[
                    &a.get().min(b.get()),
                    &a.get().max(b.get()),
                    &after,
                    &LIST_LIMIT,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| MessageCard {
                id: row.get(0),
                from_user_id: row.get(1),
                to_user_id: row.get(2),
                content: row.get(3),
                create_time: row.get(4),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_store_that_does_not_answer_is_unavailable() {
        // What the Redis client returns when a reply does not come within its timeout.
        let timeout = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(ReadError::from(timeout).is_unavailable());
        let no_connection =
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait);
        assert!(ReadError::from(no_connection).is_unavailable());

        let unreadable = redis::RedisError::from((redis::ErrorKind::Parse, "not a card"));
        assert!(!ReadError::from(unreadable).is_unavailable());

        // A media store that fails (an object that is not there is answered apart, 404).
        let media = object_store::Error::Generic {
            store: "S3",
            source: "connection reset".into(),
        };
        assert!(ReadError::from(media).is_unavailable());
        assert!(ReadError::NotWhole.is_unavailable());
    }
}
