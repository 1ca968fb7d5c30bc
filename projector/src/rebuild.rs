//! Rebuilds the Redis read models from the Postgres ones: for an operator whose Redis lost its
//! data (it keeps nothing on disk here) or whose counters are in doubt. Postgres holds every
//! list and membership the Redis models derive from, and the last event applied per
//! aggregate, so the rebuilt Redis is exactly what applying the same events would have made,
//! and the projector carries on from there. Stop the projector while this runs.

use infra::redis_store::Keys;
use redis::aio::ConnectionManager;
use tokio_postgres::Row;

/// Commands sent to Redis in one round trip.
const BATCH: usize = 1000;

/// How much was rebuilt.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    pub users: usize,
    pub videos: usize,
    pub likes: usize,
    pub follows: usize,
}

pub async fn rebuild_redis(
    pool: &deadpool_postgres::Pool,
    redis: &ConnectionManager,
    keys: &Keys,
) -> anyhow::Result<Rebuilt> {
    let mut redis = redis.clone();
    let client = pool.get().await?;
    // One snapshot of the read database for every query below.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    clear(&mut redis, keys).await?;

    let users = client
        .query(
            "SELECT u.id, u.name, u.signature,
                    coalesce(u.avatar, ''), coalesce(u.background_image, ''),
                    (SELECT count(*) FROM follows WHERE follower_id = u.id),
                    (SELECT count(*) FROM follows WHERE followee_id = u.id),
                    (SELECT count(*) FROM likes l JOIN videos v ON v.id = l.video_id
                      WHERE v.author_id = u.id),
                    (SELECT count(*) FROM videos WHERE author_id = u.id),
                    (SELECT count(*) FROM likes WHERE user_id = u.id)
               FROM users u",
            &[],
        )
        .await?;
    send(&mut redis, &users, |pipe, row: &Row| {
        pipe.hset_multiple(
            keys.user(row.get(0)),
            &[
                ("name", row.get::<_, String>(1)),
                ("signature", row.get(2)),
                ("avatar", row.get(3)),
                ("background_image", row.get(4)),
                ("follow_count", row.get::<_, i64>(5).to_string()),
                ("follower_count", row.get::<_, i64>(6).to_string()),
                ("total_favorited", row.get::<_, i64>(7).to_string()),
                ("work_count", row.get::<_, i64>(8).to_string()),
                ("favorite_count", row.get::<_, i64>(9).to_string()),
            ],
        );
    })
    .await?;

    let videos = client
        .query(
            "SELECT v.id, v.author_id, v.title, v.video_key, coalesce(v.cover_key, ''),
                    v.published_at,
                    (SELECT count(*) FROM likes WHERE video_id = v.id),
                    (SELECT count(*) FROM comments WHERE video_id = v.id AND deleted_at IS NULL)
               FROM videos v",
            &[],
        )
        .await?;
    send(&mut redis, &videos, |pipe, row: &Row| {
        let id: i64 = row.get(0);
        let published_at: i64 = row.get(5);
        pipe.hset_multiple(
            keys.video(id),
            &[
                ("author_id", row.get::<_, i64>(1).to_string()),
                ("title", row.get(2)),
                ("video_key", row.get(3)),
                ("cover_key", row.get(4)),
                ("published_at", published_at.to_string()),
                ("favorite_count", row.get::<_, i64>(6).to_string()),
                ("comment_count", row.get::<_, i64>(7).to_string()),
            ],
        )
        .zadd(keys.feed(), id, published_at);
    })
    .await?;

    let likes = client
        .query("SELECT user_id, video_id FROM likes", &[])
        .await?;
    send(&mut redis, &likes, |pipe, row: &Row| {
        pipe.sadd(keys.likes(row.get(0)), row.get::<_, i64>(1));
    })
    .await?;

    let follows = client
        .query("SELECT follower_id, followee_id FROM follows", &[])
        .await?;
    send(&mut redis, &follows, |pipe, row: &Row| {
        pipe.sadd(keys.following(row.get(0)), row.get::<_, i64>(1));
    })
    .await?;

    // Redis has applied exactly what Postgres has: redelivered events are skipped in both.
    let applied = client
        .query(
            "SELECT aggregate_type || '/' || aggregate_id, sequence FROM applied_sequences",
            &[],
        )
        .await?;
    send(&mut redis, &applied, |pipe, row: &Row| {
        pipe.hset(
            keys.applied(),
            row.get::<_, String>(0),
            row.get::<_, i64>(1),
        );
    })
    .await?;
    client.batch_execute("COMMIT").await?;

    Ok(Rebuilt {
        users: users.len(),
        videos: videos.len(),
        likes: likes.len(),
        follows: follows.len(),
    })
}

/// Removes every key under the prefix.
async fn clear(redis: &mut ConnectionManager, keys: &Keys) -> Result<(), redis::RedisError> {
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys.everything())
            .arg("COUNT")
            .arg(BATCH)
            .query_async(redis)
            .await?;
        if !found.is_empty() {
            let () = redis::cmd("UNLINK").arg(&found).query_async(redis).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn send(
    redis: &mut ConnectionManager,
    rows: &[Row],
    add: impl Fn(&mut redis::Pipeline, &Row),
) -> Result<(), redis::RedisError> {
    for chunk in rows.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for row in chunk {
            add(&mut pipe, row);
        }
        let () = pipe.query_async(redis).await?;
    }
    Ok(())
}
