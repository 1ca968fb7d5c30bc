//! What the Redis read models cost in memory, per like: the users' and videos' cards are
//! made first, then `--likes` likes are applied through the projector's own plans and Lua
//! (the changes and the per-aggregate record of applied events), and the growth of Redis's
//! `used_memory` is divided among them. Run against a Redis of its own (scripts/bench.sh
//! starts one): it writes under a prefix of its own and removes nothing. Prints one RESULT
//! line for scripts/bench.sh.

use anyhow::Context;
use chrono::Utc;
use clap::Parser;
use infra::envelope::{PublishedEvent, StoredEvent};
use infra::redis_store::{apply_all_once, Change, Keys};
use infra::settings::{secret, RedisSettings};
use redis::aio::ConnectionManager;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Redis memory of the read models, per like")]
struct Args {
    /// A Redis of the benchmark's own.
    #[arg(long)]
    redis_url: String,
    #[arg(long, default_value_t = 1_000_000)]
    likes: i64,
    #[arg(long, default_value_t = 10_000)]
    users: i64,
    #[arg(long, default_value_t = 100_000)]
    videos: i64,
}

/// Events applied in one call: as the projector's batches and replay pages do.
const CHUNK: usize = 5_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = RedisSettings {
        redis_url: secret(&args.redis_url),
        redis_key_prefix: format!("redis-memory-{}:", std::process::id()),
    };
    let mut redis = infra::redis_store::connect_for_batches(&settings).await?;
    let keys = Keys::new(&settings);
    // Whole read models, as a rebuild leaves them.
    let () = redis::cmd("SET")
        .arg(keys.ready())
        .arg(1)
        .query_async(&mut redis)
        .await?;

    let users = (1..=args.users).map(|id| {
        stored(
            "user",
            id.to_string(),
            "UserRegistered",
            json!({"name": format!("user-{id}")}),
        )
    });
    apply(&mut redis, &keys, users).await?;
    let videos = (1..=args.videos).map(|id| {
        stored(
            "video",
            id.to_string(),
            "VideoPublished",
            json!({"author_id": 1 + id % args.users, "title": format!("video {id}"),
                   "video_key": format!("videos/{id}.mp4"), "cover_key": null,
                   "published_at": id}),
        )
    });
    apply(&mut redis, &keys, videos).await?;
    let before = used_memory(&mut redis).await?;

    // Each user likes videos spread over the whole set, every pair at most once.
    let likes = (0..args.likes).map(|n| {
        let user = 1 + n % args.users;
        let video = 1 + (n / args.users * 7919 + user) % args.videos;
        stored(
            "like",
            format!("{video}:{user}"),
            "VideoLiked",
            json!({"video_id": video, "user_id": user,
                   "video_author_id": 1 + video % args.users, "liked_at": n}),
        )
    });
    apply(&mut redis, &keys, likes).await?;
    let after = used_memory(&mut redis).await?;
    let applied = memory_of(&mut redis, &format!("{}applied:*", keys.base())).await?;

    let per_like = (after - before) as f64 / args.likes as f64;
    println!(
        "RESULT redis_memory likes={} bytes_per_like={per_like:.1} mib_per_million_likes={:.1} \
         applied_record_bytes_per_like={:.1} cards_mib={:.1}",
        args.likes,
        per_like * 1e6 / (1024.0 * 1024.0),
        applied as f64 / (args.users + args.videos + args.likes) as f64,
        before as f64 / (1024.0 * 1024.0),
    );
    Ok(())
}

/// An event of sequence 1 as the relay publishes it.
fn stored(aggregate_type: &str, id: String, event_type: &str, fields: Value) -> PublishedEvent {
    PublishedEvent::from_stored(StoredEvent {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: id,
        sequence: 1,
        event_type: event_type.to_owned(),
        event_version: "1".to_owned(),
        payload: json!({ event_type: fields }),
        recorded_at: Utc::now(),
    })
    .expect("a well-formed event")
}

/// Applies `events` through the projector's plans, [`CHUNK`] at a time.
async fn apply(
    redis: &mut ConnectionManager,
    keys: &Keys,
    events: impl Iterator<Item = PublishedEvent>,
) -> anyhow::Result<()> {
    let mut events = events.peekable();
    while events.peek().is_some() {
        let chunk: Vec<PublishedEvent> = events.by_ref().take(CHUNK).collect();
        let plans: Vec<(String, i64, projector::projections::Plan)> = chunk
            .iter()
            .map(|event| {
                let plan = projector::projections::plan_event(event)?
                    .context("an event the projector follows")?;
                Ok((
                    format!("{}/{}", event.aggregate_type, event.aggregate_id),
                    event.sequence,
                    plan,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let changes: Vec<(&str, i64, &Change)> = plans
            .iter()
            .filter_map(|(aggregate, sequence, plan)| {
                Some((aggregate.as_str(), *sequence, plan.redis_change()?))
            })
            .collect();
        let applied = apply_all_once(redis, keys, &[], &changes).await?;
        anyhow::ensure!(applied.whole, "the read models were not whole");
    }
    Ok(())
}

/// The memory of every key matching `pattern` (`MEMORY USAGE`, exact).
async fn memory_of(redis: &mut ConnectionManager, pattern: &str) -> anyhow::Result<i64> {
    let (mut cursor, mut total) = (0_u64, 0_i64);
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        let mut pipe = redis::pipe();
        for key in &found {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0);
        }
        let sizes: Vec<Option<i64>> = pipe.query_async(redis).await?;
        total += sizes.into_iter().flatten().sum::<i64>();
        if next == 0 {
            return Ok(total);
        }
        cursor = next;
    }
}

async fn used_memory(redis: &mut ConnectionManager) -> anyhow::Result<i64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(redis).await?;
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .context("INFO memory has used_memory")?
        .trim()
        .parse()
        .context("used_memory is a number")
}
