//! Rebuilds the Redis read models from the Postgres ones: when Redis lost its data (found by
//! the projector itself: see [`Keys::ready`] and [`Keys::offsets`]) or when an operator has its
//! counters in doubt. Postgres holds every list and membership the Redis models derive from,
//! the last event applied per aggregate and the last message per partition, so the rebuilt
//! Redis is exactly what applying the same events would have made, and projectors carry on
//! from there.
//!
//! The rebuild writes a new generation beside the current one (see [`Keys`]), which readers
//! go on reading meanwhile (stale, never empty); projectors make no Redis change from its start
//! to its end: their batches go on in Postgres, the rebuilding projector's own included (it
//! rebuilds in the background), and keep their Redis changes for the new generation. It then switches readers
//! and projectors to the new generation in one step, and the old generations are dropped a
//! moment later, once no reader can still be reading them. One rebuild runs at a time.

use std::time::Duration;

use infra::redis_store::Keys;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio_postgres::Row;

/// Commands sent to Redis in one round trip.
const BATCH: usize = 1000;

/// The Postgres advisory lock held by a rebuild, so that projectors finding Redis empty at the
/// same moment rebuild it once; a replay takes it too, to reserve its generation and to switch.
pub const REBUILD_LOCK: i64 = 0x0072_6562_7569_6c64;

/// How long an old generation is kept after the switch: longer than a reader may go on using
/// the generation it resolved (a request's duration; a cached pointer, at most 1 s).
pub const OLD_GENERATION_KEPT: Duration = Duration::from_secs(3);

/// Gives the next generation's number: one past both the last given and the current one.
const NEXT_GENERATION: &str = r"
local next = redis.call('INCR', KEYS[1])
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if next <= current then
  next = current + 1
  redis.call('SET', KEYS[1], next)
end
return next
";

/// Switches to the new generation (ARGV[2]), declared whole (`ready`, with the time), if this
/// rebuild's token (ARGV[1]) is still there.
const SWITCH: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
";

/// How much was rebuilt.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// The generation built, now current.
    pub generation: u64,
    pub users: usize,
    pub videos: usize,
    pub likes: usize,
    pub follows: usize,
}

/// Rebuilds the Redis read models, whatever they hold now, and drops the old generations.
pub async fn rebuild_redis(
    pool: &deadpool_postgres::Pool,
    redis: &ConnectionManager,
    keys: &Keys,
) -> anyhow::Result<Rebuilt> {
    let rebuilt = locked(pool, redis, keys, false)
        .await?
        .expect("an unconditional rebuild always runs");
    tokio::time::sleep(OLD_GENERATION_KEPT).await;
    drop_generations(&mut redis.clone(), keys, |g| g < rebuilt.generation).await?;
    Ok(rebuilt)
}

/// Rebuilds the Redis read models unless they are whole. Returns what was rebuilt, if anything.
/// The old generations are dropped in the background.
pub async fn restore_redis(
    pool: &deadpool_postgres::Pool,
    redis: &ConnectionManager,
    keys: &Keys,
) -> anyhow::Result<Option<Rebuilt>> {
    let rebuilt = locked(pool, redis, keys, true).await?;
    if let Some(rebuilt) = &rebuilt {
        tracing::warn!(
            ?rebuilt,
            "the Redis read models were not whole: rebuilt from Postgres"
        );
        let (mut redis, keys, built) = (redis.clone(), keys.clone(), rebuilt.generation);
        tokio::spawn(async move {
            tokio::time::sleep(OLD_GENERATION_KEPT).await;
            // One left behind (this process died, Redis failed) goes at the next rebuild.
            if let Err(error) = drop_generations(&mut redis, &keys, |g| g < built).await {
                tracing::warn!(%error, "could not drop the old Redis generations");
            }
        });
    }
    Ok(rebuilt)
}

/// Whether a rebuild (of another projector, an operator's, or a replay's switch) holds the
/// rebuild lock now. Asked without waiting: a batch finding Redis being rebuilt goes on with
/// Postgres and makes its Redis part once the rebuild is over.
pub async fn under_way(pool: &deadpool_postgres::Pool) -> anyhow::Result<bool> {
    // Taken for the statement's own transaction only: nothing to give back, nothing left
    // held on a pooled connection.
    let taken: bool = pool
        .get()
        .await?
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&REBUILD_LOCK])
        .await?
        .get(0);
    Ok(!taken)
}

async fn locked(
    pool: &deadpool_postgres::Pool,
    redis: &ConnectionManager,
    keys: &Keys,
    unless_ready: bool,
) -> anyhow::Result<Option<Rebuilt>> {
    let client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&REBUILD_LOCK])
        .await?;
    let rebuilt = async {
        let mut redis = redis.clone();
        let current = infra::redis_store::current(&mut redis, keys).await?;
        // Under the lock no other rebuild runs: a token left is a rebuild that died.
        let (ready, abandoned, one_hash): (bool, bool, bool) = redis::pipe()
            .exists(current.ready())
            .exists(keys.rebuilding())
            .exists(current.applied_as_one_hash())
            .query_async(&mut redis)
            .await?;
        // Models made by a build that kept the record of applied events as one hash are read
        // by none of this build's scripts: they are made again.
        let whole = ready && !one_hash;
        if unless_ready && whole && !abandoned {
            return Ok(None);
        }
        rebuild(&client, &mut redis, keys).await.map(Some)
    }
    .await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&REBUILD_LOCK])
        .await;
    if rebuilt.is_err() || unlocked.is_err() {
        // A failed rebuild may leave its transaction open: closing the connection ends both
        // it and the lock.
        drop(deadpool_postgres::Object::take(client));
    }
    rebuilt
}

async fn rebuild(
    client: &tokio_postgres::Client,
    redis: &mut ConnectionManager,
    base: &Keys,
) -> anyhow::Result<Rebuilt> {
    // From here on projectors make no Redis change until the switch.
    let token = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let () = redis.set(base.rebuilding(), &token).await?;
    // What an earlier rebuild left (one that died, or whose Redis restarted under it: its
    // generation's number may come again), and old generations not dropped yet, go first:
    // a generation is only ever written by one rebuild, from nothing.
    let current = infra::redis_store::current(redis, base).await?.generation();
    drop_generations(redis, base, |g| g != current).await?;
    let generation = next_generation(redis, base).await?;
    let keys = &base.in_generation(generation);
    // One snapshot of the read database for every query below, taken after the last event
    // was applied to the old Redis models.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;

    let users = stream(
        client,
        redis,
        "SELECT u.id, u.name, u.signature,
                    coalesce(u.avatar, ''), coalesce(u.background_image, ''),
                    (SELECT count(*) FROM follows WHERE follower_id = u.id),
                    (SELECT count(*) FROM follows WHERE followee_id = u.id),
                    (SELECT count(*) FROM likes l JOIN videos v ON v.id = l.video_id
                      WHERE v.author_id = u.id),
                    (SELECT count(*) FROM videos WHERE author_id = u.id),
                    (SELECT count(*) FROM likes WHERE user_id = u.id)
               FROM users u",
        |pipe, row: &Row| {
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
        },
    )
    .await?;

    let videos = stream(
        client,
        redis,
        "SELECT v.id, v.author_id, v.title, v.video_key, coalesce(v.cover_key, ''),
                    v.published_at,
                    (SELECT count(*) FROM likes WHERE video_id = v.id),
                    (SELECT count(*) FROM comments WHERE video_id = v.id AND deleted_at IS NULL)
               FROM videos v",
        |pipe, row: &Row| {
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
        },
    )
    .await?;

    let likes = stream(
        client,
        redis,
        "SELECT user_id, video_id FROM likes",
        |pipe, row: &Row| {
            pipe.sadd(keys.likes(row.get(0)), row.get::<_, i64>(1));
        },
    )
    .await?;

    let follows = stream(
        client,
        redis,
        "SELECT follower_id, followee_id FROM follows",
        |pipe, row: &Row| {
            pipe.sadd(keys.following(row.get(0)), row.get::<_, i64>(1));
        },
    )
    .await?;

    // Redis has applied exactly what Postgres has: redelivered events are skipped in both.
    stream(
        client,
        redis,
        "SELECT aggregate_type || '/' || aggregate_id, sequence FROM applied_sequences",
        |pipe, row: &Row| {
            let (record, field) = keys.applied(&row.get::<_, String>(0));
            pipe.hset(record, field, row.get::<_, i64>(1));
        },
    )
    .await?;
    // And the messages they came in: later batches are checked to follow on from these.
    stream(
        client,
        redis,
        "SELECT topic || '/' || partition, \"offset\" FROM applied_offsets",
        |pipe, row: &Row| {
            pipe.hset(
                keys.offsets(),
                row.get::<_, String>(0),
                row.get::<_, i64>(1),
            );
        },
    )
    .await?;
    client.batch_execute("COMMIT").await?;
    let switched: i64 = redis::Script::new(SWITCH)
        .key(base.rebuilding())
        .key(base.current_generation())
        .key(keys.ready())
        .arg(&token)
        .arg(generation)
        .arg(chrono::Utc::now().to_rfc3339())
        .invoke_async(redis)
        .await?;
    if switched != 1 {
        anyhow::bail!("Redis lost its data during the rebuild: it is to be rebuilt again");
    }

    Ok(Rebuilt {
        generation,
        users,
        videos,
        likes,
        follows,
    })
}

/// Removes the read models of the generations `which` picks, except the one a replay is
/// building (see [`Keys::replaying`]); never a key under the prefix that is no generation's
/// (the pointer, the rebuild's token, another deployment's keys whose prefix begins with this
/// one, unless it goes on like a generation's: see [`Keys::generation_of`]).
pub async fn drop_generations(
    redis: &mut ConnectionManager,
    base: &Keys,
    which: impl Fn(u64) -> bool,
) -> Result<usize, redis::RedisError> {
    let replaying: Option<u64> = redis.get(base.replaying()).await?;
    let which = |generation: u64| Some(generation) != replaying && which(generation);
    drop_generations_even_replaying(redis, base, which).await
}

/// [`drop_generations`], the replay's own included: for the replay itself.
pub async fn drop_generations_even_replaying(
    redis: &mut ConnectionManager,
    base: &Keys,
    which: impl Fn(u64) -> bool,
) -> Result<usize, redis::RedisError> {
    let mut cursor: u64 = 0;
    let mut dropped = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(base.everything())
            .arg("COUNT")
            .arg(BATCH)
            .query_async(redis)
            .await?;
        let old: Vec<&String> = found
            .iter()
            .filter(|key| base.generation_of(key).is_some_and(&which))
            .collect();
        if !old.is_empty() {
            dropped += old.len();
            let () = redis::cmd("UNLINK").arg(&old).query_async(redis).await?;
        }
        if next == 0 {
            return Ok(dropped);
        }
        cursor = next;
    }
}

/// A generation number no generation has had: one past both the last given and the current.
pub async fn next_generation(
    redis: &mut ConnectionManager,
    base: &Keys,
) -> Result<u64, redis::RedisError> {
    redis::Script::new(NEXT_GENERATION)
        .key(base.last_generation())
        .key(base.current_generation())
        .invoke_async(redis)
        .await
}

/// Runs `query` in the rebuild's snapshot and makes the Redis commands `add` makes of its
/// rows, a page of [`BATCH`] rows at a time through a cursor: a table is never held whole in
/// memory, and the rebuild's session is never idle in its transaction for longer than one
/// Redis round trip (its lease ends it after `LOCK_LEASE_MS`). Returns how many rows it read.
async fn stream(
    client: &tokio_postgres::Client,
    redis: &mut ConnectionManager,
    query: &str,
    add: impl Fn(&mut redis::Pipeline, &Row),
) -> anyhow::Result<usize> {
    client
        .batch_execute(&format!("DECLARE rebuilt NO SCROLL CURSOR FOR {query}"))
        .await?;
    let fetch = format!("FETCH {BATCH} FROM rebuilt");
    let mut read = 0;
    loop {
        let rows = client.query(&fetch, &[]).await?;
        if rows.is_empty() {
            break;
        }
        read += rows.len();
        let mut pipe = redis::pipe();
        for row in &rows {
            add(&mut pipe, row);
        }
        let () = pipe.query_async(redis).await?;
    }
    client.batch_execute("CLOSE rebuilt").await?;
    Ok(read)
}
