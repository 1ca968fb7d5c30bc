//! `verify`: are the read models what the events say, and do the topics hold every event?
//!
//! The event store is folded with plain SQL (see [`fold`]), independently of the projector,
//! and compared with every list and profile in Postgres and every card, counter, feed entry
//! and membership set in Redis. On a live stack the read models lag the events: a pass waits
//! until the relay has published everything it folded and the projector has committed past
//! the topics' ends; differences then are kept only if every pass finds them, up to
//! [`PASSES`], or at once when nothing was written during a pass.

pub mod compare;
pub mod fold;
pub mod models;
pub mod read_models;
pub mod topics;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use infra::redis_store::Keys;
pub use infra::settings::GroupSettings;
use infra::settings::{
    expose, from_env, EventStoreSettings, KafkaSettings, ReadStoreSettings, RedisSettings,
};
use tokio::time::Instant;

pub use compare::{Difference, Store};

/// Passes made at most while writes go on.
pub const PASSES: usize = 3;

#[derive(Clone, Debug)]
pub struct Settings {
    pub event_store: EventStoreSettings,
    pub read_store: ReadStoreSettings,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    pub group: GroupSettings,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            event_store: from_env()?,
            read_store: from_env()?,
            redis: from_env()?,
            kafka: from_env()?,
            group: from_env()?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// How long each wait (the relay publishing, the projector catching up) may take.
    pub wait: Duration,
    /// Whether to read the topics from the beginning to check they hold every event.
    pub topics: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Events in the store at the last pass.
    pub events: i64,
    pub passes: usize,
    /// Whether the projector had committed past the topics' ends before the last comparison;
    /// if not, differences may be lag.
    pub caught_up: bool,
    pub differences: Vec<Difference>,
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "connection closed");
        }
    });
    Ok(client)
}

pub async fn verify(settings: &Settings, options: &Options) -> anyhow::Result<Report> {
    let mut events = connect(expose(&settings.event_store.database_url)).await?;
    let read = connect(expose(&settings.read_store.read_database_url)).await?;
    let mut redis = infra::redis_store::connect_for_batches(&settings.redis).await?;
    let base = Keys::new(&settings.redis);
    let topic_names = topics::names(&settings.kafka);
    let projected = topics::projected(&settings.kafka);

    let mut report = Report::default();
    let mut persisting: Option<Vec<Difference>> = None;
    for pass in 1..=PASSES {
        report.passes = pass;
        let expected = fold::fold(&mut events).await?;
        let folded = event_count(&events).await?;
        report.events = folded;
        // Everything folded is published once the outbox holds nothing queued before now.
        let queued: Option<i64> = events
            .query_one(
                "SELECT max(id) FROM outbox WHERE parked_because IS NULL",
                &[],
            )
            .await?
            .get(0);
        let published = if pass == 1 && options.topics {
            Some(published_through(&mut events).await?)
        } else {
            None
        };
        if let Some(queued) = queued {
            wait_for(options.wait, "the relay to publish what was folded", || async {
                let left: bool = events
                    .query_one(
                        "SELECT EXISTS (SELECT FROM outbox WHERE id <= $1 AND parked_because IS NULL)",
                        &[&queued],
                    )
                    .await?
                    .get(0);
                Ok(!left)
            })
            .await?;
        }
        let ends = {
            let kafka = settings.kafka.clone();
            let names = topic_names.clone();
            tokio::task::spawn_blocking(move || topics::ends(&kafka, &names)).await??
        };
        // Through the topics' ends: Postgres (the group's committed offsets come after it), and
        // Redis (its record of offsets; a Redis being rebuilt is not there yet).
        let redis_through: Vec<(String, i64)> = ends
            .iter()
            .filter(|((topic, _), end)| projected.contains(topic) && **end > 0)
            .map(|((topic, partition), end)| (format!("{topic}/{partition}"), end - 1))
            .collect();
        report.caught_up = wait_for(options.wait, "the projector to catch up", || async {
            let kafka = settings.kafka.clone();
            let group = settings.group.projector_group.clone();
            let asked = ends.clone();
            let committed =
                tokio::task::spawn_blocking(move || topics::committed(&kafka, &group, &asked))
                    .await??;
            let postgres = ends
                .iter()
                .filter(|((topic, _), _)| projected.contains(topic))
                .all(|(place, end)| committed.get(place).copied().unwrap_or(0) >= *end);
            Ok(postgres
                && infra::redis_store::holds(&mut redis.clone(), &base, &redis_through).await?)
        })
        .await
        .is_ok();

        let in_postgres = read_models::postgres(&read).await?;
        let users: BTreeSet<i64> = expected
            .users
            .keys()
            .chain(in_postgres.users.keys())
            .copied()
            .collect();
        let videos: BTreeSet<i64> = expected
            .videos
            .keys()
            .chain(in_postgres.videos.keys())
            .copied()
            .collect();
        let keys = infra::redis_store::current(&mut redis, &base).await?;
        let in_redis = read_models::redis(&mut redis, &keys, &users, &videos).await?;
        let mut found: BTreeSet<Difference> = compare::postgres(&expected, &in_postgres)
            .into_iter()
            .chain(compare::redis(&expected, &in_redis))
            .collect();
        if let Some(published) = published {
            let kafka = settings.kafka.clone();
            let ends = ends.clone();
            let on_topics =
                tokio::task::spawn_blocking(move || topics::held_through(&kafka, &ends)).await??;
            found.extend(compare_topics(&published, &on_topics));
        }
        // Kept: what every pass found differing (with what this one found there).
        let found: Vec<Difference> = match persisting.take() {
            None => found.into_iter().collect(),
            Some(before) => {
                let entries: BTreeSet<(Store, &str)> = before
                    .iter()
                    .map(|difference| (difference.store, difference.entry.as_str()))
                    .collect();
                found
                    .into_iter()
                    .filter(|d| entries.contains(&(d.store, d.entry.as_str())))
                    .collect()
            }
        };
        let quiet = event_count(&events).await? == folded;
        tracing::info!(pass, differences = found.len(), quiet, "compared");
        let done = found.is_empty() || (quiet && report.caught_up);
        persisting = Some(found);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    report.differences = persisting.unwrap_or_default().into_iter().collect();
    Ok(report)
}

async fn event_count(events: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(events
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0))
}

/// Per published aggregate, the last event the topics must hold: its last stored event, or
/// the one before its first still queued in the outbox (one snapshot for both).
async fn published_through(
    events: &mut tokio_postgres::Client,
) -> anyhow::Result<HashMap<topics::Aggregate, i64>> {
    let tx = events
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let types: Vec<&str> = domain::published::AGGREGATE_TYPES.to_vec();
    let mut through: HashMap<topics::Aggregate, i64> = HashMap::new();
    for row in tx
        .query(
            "SELECT aggregate_type, aggregate_id, max(sequence) FROM events
              WHERE aggregate_type = ANY($1) GROUP BY 1, 2",
            &[&types],
        )
        .await?
    {
        through.insert((row.get(0), row.get(1)), row.get(2));
    }
    for row in tx
        .query(
            "SELECT aggregate_type, aggregate_id, min(sequence) FROM outbox GROUP BY 1, 2",
            &[],
        )
        .await?
    {
        let first_queued: i64 = row.get(2);
        through.insert((row.get(0), row.get(1)), first_queued - 1);
    }
    tx.commit().await?;
    Ok(through)
}

fn compare_topics(
    published: &HashMap<topics::Aggregate, i64>,
    on_topics: &HashMap<topics::Aggregate, i64>,
) -> Vec<Difference> {
    published
        .iter()
        .filter_map(|(aggregate, &through)| {
            let held = on_topics.get(aggregate).copied().unwrap_or(0);
            (held < through).then(|| Difference {
                store: Store::Topics,
                entry: format!("{}/{}", aggregate.0, aggregate.1),
                expected: format!("events 1 to {through}"),
                found: format!("1 to {held} without a gap"),
            })
        })
        .collect()
}

/// Asks `done` until it says yes, for at most `wait`.
async fn wait_for<F, Fut>(wait: Duration, what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + wait;
    loop {
        if done().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            tracing::warn!("gave up waiting for {what} after {wait:?}");
            anyhow::bail!("waited {wait:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
