//! The read models as they are: the Postgres read database's tables, and Redis's cards and
//! sets (read through the key layout of `infra::redis_store::Keys`, the one module that owns
//! it).

use std::collections::{BTreeSet, HashMap};

use infra::redis_store::Keys;
use redis::aio::ConnectionManager;

use crate::models::{Comment, Models, User, UserCounters, Video};

/// Commands sent to Redis in one round trip.
const CHUNK: usize = 1000;

pub async fn postgres(client: &tokio_postgres::Client) -> Result<Models, tokio_postgres::Error> {
    let mut models = Models::default();
    for row in client.query("SELECT id, name FROM users", &[]).await? {
        models.users.insert(
            row.get(0),
            User {
                name: row.get(1),
                ..User::default()
            },
        );
    }
    for row in client
        .query("SELECT id, author_id, title FROM videos", &[])
        .await?
    {
        models.videos.insert(
            row.get(0),
            Video {
                author_id: row.get(1),
                title: row.get(2),
                ..Video::default()
            },
        );
    }
    for row in client
        .query("SELECT user_id, video_id FROM likes", &[])
        .await?
    {
        models.likes.insert((row.get(0), row.get(1)));
    }
    for row in client
        .query("SELECT follower_id, followee_id FROM follows", &[])
        .await?
    {
        models.follows.insert((row.get(0), row.get(1)));
    }
    for row in client
        .query(
            "SELECT id, video_id, user_id FROM comments WHERE deleted_at IS NULL",
            &[],
        )
        .await?
    {
        models.comments.insert(
            row.get(0),
            Comment {
                video_id: row.get(1),
                user_id: row.get(2),
            },
        );
    }
    for row in client.query("SELECT id FROM messages", &[]).await? {
        models.messages.insert(row.get(0));
    }
    Ok(models)
}

/// What Redis holds for the users and videos named (those of the fold and of Postgres: a card
/// Redis holds for a user neither knows is not looked for), and the whole feed.
pub struct Redis {
    pub models: Models,
    /// The feed's video ids.
    pub feed: BTreeSet<i64>,
}

pub async fn redis(
    redis: &mut ConnectionManager,
    keys: &Keys,
    users: &BTreeSet<i64>,
    videos: &BTreeSet<i64>,
) -> Result<Redis, redis::RedisError> {
    let mut models = Models::default();
    let users: Vec<i64> = users.iter().copied().collect();
    for chunk in users.chunks(CHUNK) {
        let mut cards = redis::pipe();
        let mut likes = redis::pipe();
        let mut following = redis::pipe();
        for &user in chunk {
            cards.hgetall(keys.user(user));
            likes.smembers(keys.likes(user));
            following.smembers(keys.following(user));
        }
        let cards: Vec<HashMap<String, String>> = cards.query_async(redis).await?;
        let likes: Vec<Vec<i64>> = likes.query_async(redis).await?;
        let following: Vec<Vec<i64>> = following.query_async(redis).await?;
        let replies = cards.into_iter().zip(likes).zip(following);
        for (&user, ((card, likes), following)) in chunk.iter().zip(replies) {
            if let Some(name) = card.get("name") {
                let counter = |field: &str| {
                    card.get(field)
                        .and_then(|value| value.parse().ok())
                        .unwrap_or(0)
                };
                models.users.insert(
                    user,
                    User {
                        name: name.clone(),
                        counters: UserCounters {
                            follow_count: counter("follow_count"),
                            follower_count: counter("follower_count"),
                            total_favorited: counter("total_favorited"),
                            work_count: counter("work_count"),
                            favorite_count: counter("favorite_count"),
                        },
                    },
                );
            }
            models
                .likes
                .extend(likes.into_iter().map(|video| (user, video)));
            models
                .follows
                .extend(following.into_iter().map(|followee| (user, followee)));
        }
    }
    let videos: Vec<i64> = videos.iter().copied().collect();
    for chunk in videos.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        for &video in chunk {
            pipe.hgetall(keys.video(video));
        }
        let cards: Vec<HashMap<String, String>> = pipe.query_async(redis).await?;
        for (&video, card) in chunk.iter().zip(cards) {
            let Some(author_id) = card.get("author_id").and_then(|id| id.parse().ok()) else {
                continue;
            };
            let counter = |field: &str| {
                card.get(field)
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0)
            };
            models.videos.insert(
                video,
                Video {
                    author_id,
                    title: card.get("title").cloned().unwrap_or_default(),
                    favorite_count: counter("favorite_count"),
                    comment_count: counter("comment_count"),
                },
            );
        }
    }
    let feed: Vec<i64> = redis::cmd("ZRANGE")
        .arg(keys.feed())
        .arg(0)
        .arg(-1)
        .query_async(redis)
        .await?;
    Ok(Redis {
        models,
        feed: feed.into_iter().collect(),
    })
}
