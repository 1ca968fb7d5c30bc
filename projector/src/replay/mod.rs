//! `projector rebuild` (`make rebuild`): every read model, Postgres and Redis, rebuilt from the
//! whole history by the projections' own code, beside the live ones while the stack serves,
//! then switched to.
//!
//! - **History** is read from the event store, not the topics: it is complete whatever the
//!   broker's retention, holds what the relay has not published yet, and gives each
//!   aggregate's events with no gap (see [`history`]).
//! - **The new generation** is a schema of its own migrated from scratch (see [`generation`])
//!   and a Redis generation of its own ([`Keys::in_generation`]), written by no one else.
//!   Live projectors go on applying to the live generation meanwhile.
//! - **Position**: per aggregate, the last event applied (`applied_sequences`), exactly as the
//!   projectors keep it. After reading the whole history once, the replay catches up with what
//!   was written since by comparing each aggregate's last event in the store with its own.
//! - **The switch** pauses projectors between two batches (they take
//!   [`GENERATION_SWITCH_LOCK`] shared), reads where the live generation stands, applies to the
//!   new one each event the live one has and it has not yet (so none is applied to one and
//!   skipped in the other; the new one may be ahead, and projectors then skip what it has),
//!   carries over the projectors' offsets, the dead letters and the events waiting for a
//!   missing predecessor, moves the tables and switches Redis's generation while projectors
//!   are still held, then commits. Projectors go on into the new generation; the old one is
//!   dropped.
//! - **Resumable**: each page's Redis changes (idempotent, per aggregate and sequence) and its
//!   Postgres transaction (with the position reached) are sent together, the commit once
//!   Redis has answered; a replay started again takes up where the last committed page ended.

mod generation;
mod history;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use indicatif::{ProgressBar, ProgressStyle};
use infra::envelope::{EnvelopeError, PublishedEvent, StoredEvent};
use infra::read_store::GENERATION_SWITCH_LOCK;
use infra::redis_store::{Change, GenerationLost, Keys};
use infra::settings::{expose, EventStoreSettings};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use crate::applied::Aggregate;
use crate::projections::{plan_event, rows, Plan};
use crate::rebuild::{
    drop_generations_even_replaying, next_generation, OLD_GENERATION_KEPT, REBUILD_LOCK,
};
use crate::settings::Settings;
pub use generation::{Recorded, Schemas};
use history::History;

/// Where a rebuild begun and not yet switched stands (running, or stopped midway): None when
/// there is none. For the projector's metrics.
pub async fn progress(
    control: &tokio_postgres::Client,
) -> Result<Option<Recorded>, tokio_postgres::Error> {
    match Schemas::of(control).await? {
        Some(schemas) => schemas.recorded(control).await,
        None => Ok(None),
    }
}

/// For the replay's own sessions, whatever the server's defaults: the connection holding the
/// replays' lock sits idle for most of a replay (a server that closed it would let a second
/// replay start), and its statements at the switch read whole tables.
pub(crate) const LONG_SESSION: &str =
    "-c statement_timeout=0 -c idle_in_transaction_session_timeout=0 -c idle_session_timeout=0";

/// Held by a replay for as long as it runs: one at a time per read database.
const REPLAY_LOCK: i64 = 0x0000_7265_706c_6179;

/// Catch-up rounds stop once one applies fewer events than this: the rest is applied under
/// the switch's pause.
const CAUGHT_UP: usize = 1_000;
const CATCH_UP_ROUNDS: usize = 3;

/// Aggregates whose events a catch-up reads with one statement.
const AGGREGATES_AT_ONCE: usize = 2_000;

/// How long the switch waits for a table lock (a reader's statement still running on a live
/// table) before it lets go and tries again: while it waits, readers queue behind it. Longer
/// than Postgres's `deadlock_timeout` (1 s), after which an autovacuum in the way is cancelled.
const SWITCH_LOCK_WAIT: &str = "1500ms";
const SWITCH_ATTEMPTS: usize = 10;

#[derive(Debug, Clone)]
pub struct Options {
    /// Blocks of the event store's table (8 KiB each, some 40 events) read, applied and
    /// committed at a time.
    pub blocks: i64,
    /// Whether to draw a progress bar (on a terminal only, in any case).
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            blocks: 64,
            progress: true,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The Redis generation built, now current.
    pub generation: u64,
    /// Whether it took up an earlier replay's work.
    pub resumed: bool,
    /// Events applied while reading the whole history, and how long that took.
    pub replayed: usize,
    pub replaying: Duration,
    /// Events written meanwhile, applied in catch-up rounds.
    pub caught_up: usize,
    pub switch: Switched,
}

impl Replayed {
    /// Events applied per second while reading the history.
    pub fn rate(&self) -> f64 {
        self.replayed as f64 / self.replaying.as_secs_f64().max(1e-9)
    }
}

/// The switch.
#[derive(Debug, Clone, Default)]
pub struct Switched {
    /// Events the live generation had that the new one was still missing.
    pub applied: usize,
    /// How long projectors were held between two batches.
    pub projectors_paused: Duration,
    /// How long readers of the Postgres read models could be kept waiting: from the first
    /// table moved to the commit.
    pub readers_blocked: Duration,
    /// Attempts that let go because a table stayed locked.
    pub retries: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("another replay is running against this read database")]
    AlreadyRunning,
    #[error("event {event_id} cannot be read by this build ({source}): nothing was switched")]
    Unreadable {
        event_id: String,
        source: EnvelopeError,
    },
    #[error("{0}: run the rebuild again, it starts over")]
    GenerationLost(#[from] GenerationLost),
    #[error("Redis holds {in_redis} of the {in_postgres} events applied to the new generation: it lost data since (run the rebuild again, it starts over)")]
    RedisBehind { in_redis: i64, in_postgres: i64 },
    #[error("Redis's generation being built lost its mark before the switch: run the rebuild again, it starts over")]
    SwitchRefused,
    #[error("the live tables stayed locked through {SWITCH_ATTEMPTS} attempts to switch")]
    SwitchLocked,
    #[error("the read database has no current schema (search_path names none that exists)")]
    NoSchema,
    #[error("Postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no connection to the replay's schema: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Connecting to a store, or migrating a schema.
    #[error("connecting: {0:#}")]
    Connect(#[from] anyhow::Error),
}

/// Rebuilds every read model from the event store into a new generation and switches to it;
/// takes up an earlier replay that stopped midway.
pub async fn rebuild(
    settings: &Settings,
    event_store: &EventStoreSettings,
    options: &Options,
) -> Result<Replayed, ReplayError> {
    let url = expose(&settings.read_store.read_database_url);
    // Migrates the live schema too, should this be the first thing run on a new database.
    drop(infra::read_store::connect_for_batches(&settings.read_store).await?);
    let mut control = lock_replays(url).await?;
    match replay_locked(settings, event_store, options, &mut control, false).await {
        Err(
            error @ (ReplayError::RedisBehind { .. }
            | ReplayError::GenerationLost(_)
            | ReplayError::SwitchRefused),
        ) => {
            // Redis lost data while the replay was building on it: once more, from nothing.
            tracing::warn!(%error, "starting the replay over");
            replay_locked(settings, event_store, options, &mut control, true).await
        }
        other => other,
    }
}

/// Drops what a replay that stopped midway built (its schema and its Redis generation), for an
/// operator who will not take it up. Err if a replay is running.
pub async fn abandon(settings: &Settings) -> Result<bool, ReplayError> {
    let control = lock_replays(expose(&settings.read_store.read_database_url)).await?;
    let schemas = Schemas::of(&control).await?.ok_or(ReplayError::NoSchema)?;
    let mut redis = infra::redis_store::connect_for_batches(&settings.redis).await?;
    let base = Keys::new(&settings.redis);
    let recorded = schemas.recorded(&control).await?;
    if let Some(recorded) = &recorded {
        let current = infra::redis_store::current(&mut redis, &base)
            .await?
            .generation();
        if current == recorded.redis_generation && !schemas.tables(&control).await?.is_empty() {
            // It switched Redis and stopped before its Postgres commit: Redis may hold what
            // the live tables do not. Marked not whole, it is rebuilt from them.
            let () = redis.del(base.in_generation(current).ready()).await?;
        }
    }
    let found = recorded.is_some();
    generation::drop_schema(&control, &schemas.replay).await?;
    generation::drop_schema(&control, &schemas.replaced).await?;
    control
        .execute("SELECT pg_advisory_lock($1)", &[&REBUILD_LOCK])
        .await?;
    let dropped = async {
        let building: Option<u64> = redis.get(base.replaying()).await?;
        if let Some(building) = building {
            drop_generations_even_replaying(&mut redis, &base, |g| g == building).await?;
        }
        let () = redis.del(base.replaying()).await?;
        Ok::<_, redis::RedisError>(building.is_some())
    }
    .await;
    control
        .execute("SELECT pg_advisory_unlock($1)", &[&REBUILD_LOCK])
        .await?;
    Ok(found || dropped?)
}

/// A connection to the read database holding the replays' lock for as long as it lives.
async fn lock_replays(url: &str) -> Result<tokio_postgres::Client, ReplayError> {
    let control = infra::read_store::connect_one(url, LONG_SESSION).await?;
    let locked: bool = control
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REPLAY_LOCK])
        .await?
        .get(0);
    if !locked {
        return Err(ReplayError::AlreadyRunning);
    }
    Ok(control)
}

/// [`rebuild`], under its lock; `afresh`: not taking up what an earlier replay built.
async fn replay_locked(
    settings: &Settings,
    event_store: &EventStoreSettings,
    options: &Options,
    control: &mut tokio_postgres::Client,
    afresh: bool,
) -> Result<Replayed, ReplayError> {
    let url = expose(&settings.read_store.read_database_url);
    let schemas = Schemas::of(control).await?.ok_or(ReplayError::NoSchema)?;
    // A switch that committed and stopped before dropping what it replaced.
    generation::drop_schema(control, &schemas.replaced).await?;
    let mut redis = infra::redis_store::connect_for_batches(&settings.redis).await?;
    let base = Keys::new(&settings.redis);

    let resumable = match schemas.recorded(control).await? {
        Some(recorded) if !afresh => {
            resumable(control, &mut redis, &base, &schemas, recorded).await?
        }
        _ => None,
    };
    let resumed = resumable.is_some();
    let recorded = match resumable {
        Some(recorded) => {
            // A newer build may have migrated the live schema since.
            infra::read_store::migrate_schema(url, &schemas.replay).await?;
            recorded
        }
        None => begin(control, &mut redis, &base, &schemas, url).await?,
    };
    let target =
        infra::read_store::connect_to_schema(&settings.read_store, &schemas.replay, 2).await?;
    let history = Arc::new(History::connect(expose(&event_store.database_url)).await?);
    let total = history.count().await?;
    let bar = progress_bar(options, total, recorded.events);
    let mut replay = Replay {
        applied: load_applied(&target).await?,
        early: HashMap::new(),
        generation: base.in_generation(recorded.redis_generation),
        history,
        target,
        redis,
        bar,
        blocks: options.blocks,
    };
    if resumed {
        tracing::info!(
            generation = recorded.redis_generation,
            applied = recorded.events,
            "taking up the replay that stopped"
        );
    }

    let started = Instant::now();
    let replayed = if recorded.read_through {
        0
    } else {
        replay.read_history(recorded.next_block).await?
    };
    let replaying = started.elapsed();
    replay.bar.set_message("catching up");
    let mut caught_up = 0;
    for _ in 0..CATCH_UP_ROUNDS {
        let applied = replay.catch_up().await?;
        caught_up += applied;
        if applied < CAUGHT_UP {
            break;
        }
    }
    replay.bar.set_message("switching");
    let switch = replay
        .switch(control, &schemas, &base, &recorded.token)
        .await?;
    replay.bar.finish_and_clear();

    // Nothing reads these any more: the tables replaced, the replay's own record.
    generation::drop_schema(control, &schemas.replaced).await?;
    generation::drop_schema(control, &schemas.replay).await?;
    tokio::time::sleep(OLD_GENERATION_KEPT).await;
    drop_all_but_current(control, &mut replay.redis, &base).await?;
    Ok(Replayed {
        generation: recorded.redis_generation,
        resumed,
        replayed,
        replaying,
        caught_up,
        switch,
    })
}

/// Drops every Redis generation but the current one (the one replaced, and one a rebuild of
/// the Redis models from Postgres made meanwhile and the switch replaced), under the
/// rebuilds' lock, so that none being built is taken.
async fn drop_all_but_current(
    control: &tokio_postgres::Client,
    redis: &mut ConnectionManager,
    base: &Keys,
) -> Result<(), ReplayError> {
    control
        .execute("SELECT pg_advisory_lock($1)", &[&REBUILD_LOCK])
        .await?;
    let dropped = async {
        let current = infra::redis_store::current(redis, base).await?.generation();
        drop_generations_even_replaying(redis, base, |g| g != current).await
    }
    .await;
    control
        .execute("SELECT pg_advisory_unlock($1)", &[&REBUILD_LOCK])
        .await?;
    dropped?;
    Ok(())
}

/// The earlier replay's record, if what it built is there to build on: not if its switch
/// went through, or half through, or Redis lost its generation.
async fn resumable(
    control: &tokio_postgres::Client,
    redis: &mut ConnectionManager,
    base: &Keys,
    schemas: &Schemas,
    recorded: generation::Recorded,
) -> Result<Option<generation::Recorded>, ReplayError> {
    if schemas.tables(control).await?.is_empty() {
        // Its switch committed (the tables moved) and it stopped before dropping its schema.
        tracing::info!("the last replay had switched: starting a new one");
        return Ok(None);
    }
    let current = infra::redis_store::current(redis, base).await?.generation();
    if current == recorded.redis_generation {
        // It switched Redis and stopped before its Postgres commit: Redis holds events the
        // live tables may not yet. Marked not whole, it is rebuilt from them by the projectors.
        let () = redis.del(base.in_generation(current).ready()).await?;
        tracing::warn!("the last replay stopped in its switch: Redis is rebuilt from the live tables, and the replay starts over");
        return Ok(None);
    }
    let building = base.in_generation(recorded.redis_generation);
    let (mark, replayed): (Option<String>, Option<i64>) = redis::pipe()
        .get(building.building())
        .get(building.replayed())
        .query_async(redis)
        .await?;
    if mark.as_deref() != Some(recorded.token.as_str()) || replayed.unwrap_or(0) < recorded.in_redis
    {
        tracing::warn!("Redis lost what the last replay built: starting over");
        return Ok(None);
    }
    Ok(Some(recorded))
}

/// A new replay: a Redis generation reserved (under the rebuilds' lock, so that no rebuild
/// drops it) and marked, and the schema made.
async fn begin(
    control: &tokio_postgres::Client,
    redis: &mut ConnectionManager,
    base: &Keys,
    schemas: &Schemas,
    url: &str,
) -> Result<generation::Recorded, ReplayError> {
    let token = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    control
        .execute("SELECT pg_advisory_lock($1)", &[&REBUILD_LOCK])
        .await?;
    let reserved = async {
        let earlier: Option<u64> = redis.get(base.replaying()).await?;
        if let Some(earlier) = earlier {
            drop_generations_even_replaying(redis, base, |g| g == earlier).await?;
        }
        let generation = next_generation(redis, base).await?;
        let () = redis::pipe()
            .set(base.replaying(), generation)
            .set(base.in_generation(generation).building(), &token)
            .query_async(redis)
            .await?;
        Ok::<_, redis::RedisError>(generation)
    }
    .await;
    control
        .execute("SELECT pg_advisory_unlock($1)", &[&REBUILD_LOCK])
        .await?;
    let generation = reserved?;
    schemas.begin(control, url, &token, generation).await?;
    tracing::info!(generation, schema = %schemas.replay, "replaying the event store into a new generation");
    Ok(generation::Recorded {
        token,
        redis_generation: generation,
        read_through: false,
        next_block: 0,
        events: 0,
        in_redis: 0,
    })
}

async fn load_applied(target: &Pool) -> Result<HashMap<Aggregate, i64>, ReplayError> {
    let rows = target
        .get()
        .await?
        .query(
            "SELECT aggregate_type, aggregate_id, max(sequence)
               FROM (SELECT aggregate_type, aggregate_id, sequence FROM applied_sequences
                     UNION ALL
                     SELECT aggregate_type, aggregate_id, sequence FROM replay_applied) applied
              GROUP BY aggregate_type, aggregate_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect())
}

fn progress_bar(options: &Options, total: i64, done: i64) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total.max(done) as u64).with_position(done as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:12} [{bar:32}] {human_pos}/{human_len} events  {per_sec:>12}  ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message("replaying");
    bar
}

/// Events read and planned (without IO).
struct Page {
    events: Vec<(PublishedEvent, Plan)>,
    /// Events read, those no read model follows included.
    read: usize,
    /// While reading the whole history: the first block of the table not read yet.
    next_block: Option<i64>,
}

fn plan_page(stored: Vec<StoredEvent>, next_block: Option<i64>) -> Result<Page, ReplayError> {
    let read = stored.len();
    let mut events = Vec::with_capacity(stored.len());
    for stored in stored {
        let event_id = format!(
            "{}/{}/{}",
            stored.aggregate_type, stored.aggregate_id, stored.sequence
        );
        let unreadable = |source| ReplayError::Unreadable {
            event_id: event_id.clone(),
            source,
        };
        let event = PublishedEvent::from_stored(stored).map_err(unreadable)?;
        if let Some(plan) = plan_event(&event).map_err(unreadable)? {
            events.push((event, plan));
        }
    }
    Ok(Page {
        events,
        read,
        next_block,
    })
}

/// An event to apply, with its aggregate's name in Redis's record of applied events.
struct ToApply {
    aggregate: String,
    event: PublishedEvent,
    plan: Plan,
}

struct Replay {
    history: Arc<History>,
    /// The replay's schema.
    target: Pool,
    redis: ConnectionManager,
    /// The Redis generation being built.
    generation: Keys,
    /// Per aggregate, the last event applied to the new generation.
    applied: HashMap<Aggregate, i64>,
    /// Events read before their predecessor (which lies further on in the table), by
    /// aggregate and sequence: applied once it comes. Those still here when the whole history
    /// has been read are left to the catch-up.
    early: HashMap<Aggregate, BTreeMap<i64, (PublishedEvent, Plan)>>,
    bar: ProgressBar,
    blocks: i64,
}

impl Replay {
    /// Reads the whole history from block `from` on and applies it. The next range of blocks
    /// is read and planned while one is applied.
    async fn read_history(&mut self, from: i64) -> Result<usize, ReplayError> {
        let (pages, mut ready) = tokio::sync::mpsc::channel(2);
        let reader = tokio::spawn({
            let (history, blocks) = (self.history.clone(), self.blocks.max(1));
            async move {
                let mut from = from;
                // Until the end of the table as it is then: it grows as events are written.
                while from < history.blocks().await? {
                    let to = from + blocks;
                    let page = plan_page(history.in_blocks(from, to).await?, Some(to))?;
                    if pages.send(page).await.is_err() {
                        break;
                    }
                    from = to;
                }
                Ok::<_, ReplayError>(())
            }
        });
        let mut replayed = 0;
        while let Some(page) = ready.recv().await {
            replayed += self.apply(page).await?;
        }
        reader.await.map_err(anyhow::Error::from)??;
        self.early.clear();
        self.target
            .get()
            .await?
            .execute("UPDATE replay_progress SET read_through = true", &[])
            .await?;
        Ok(replayed)
    }

    /// Applies what was written since the history was read: every event of each aggregate
    /// after the last one applied to the new generation.
    async fn catch_up(&mut self) -> Result<usize, ReplayError> {
        let behind = self.history.behind(&self.applied).await?;
        self.apply_after(&behind).await
    }

    /// Applies every event of each aggregate after the sequence given with it.
    async fn apply_after(&mut self, since: &[(Aggregate, i64)]) -> Result<usize, ReplayError> {
        let mut applied = 0;
        for aggregates in since.chunks(AGGREGATES_AT_ONCE) {
            let events = self.history.after(aggregates).await?;
            applied += self.apply(plan_page(events, None)?).await?;
        }
        Ok(applied)
    }

    /// Which events of `page` to apply, in order: each aggregate's next one, and those read
    /// before it that follow it; one that comes early waits in [`Replay::early`].
    fn in_order(&mut self, page: Page) -> (Vec<ToApply>, HashMap<Aggregate, i64>) {
        let mut advanced: HashMap<Aggregate, i64> = HashMap::new();
        let mut to_apply = vec![];
        for (event, plan) in page.events {
            let aggregate = (event.aggregate_type.clone(), event.aggregate_id.clone());
            let last = advanced
                .get(&aggregate)
                .or_else(|| self.applied.get(&aggregate))
                .copied()
                .unwrap_or(0);
            if event.sequence <= last {
                // Applied by the page a stopped replay committed last, or a catch-up before.
                continue;
            }
            if event.sequence > last + 1 {
                let early = self.early.entry(aggregate).or_default();
                early.insert(event.sequence, (event, plan));
                continue;
            }
            let name = format!("{}/{}", event.aggregate_type, event.aggregate_id);
            let mut next = event.sequence;
            to_apply.push(ToApply {
                aggregate: name.clone(),
                event,
                plan,
            });
            if let Some(early) = self.early.get_mut(&aggregate) {
                while let Some((event, plan)) = early.remove(&(next + 1)) {
                    next += 1;
                    to_apply.push(ToApply {
                        aggregate: name.clone(),
                        event,
                        plan,
                    });
                }
                if early.is_empty() {
                    self.early.remove(&aggregate);
                }
            }
            advanced.insert(aggregate, next);
        }
        (to_apply, advanced)
    }

    /// Applies a page to the new generation: its Redis changes, and its SQL with the record
    /// of what is applied (and, while reading the whole history, of where the page ended),
    /// committed once Redis has answered. Redis drops repeats by itself: a crash before the
    /// commit leaves Postgres behind, and the page applied again changes Redis no more.
    async fn apply(&mut self, page: Page) -> Result<usize, ReplayError> {
        let (read, next_block) = (page.read, page.next_block);
        let (to_apply, advanced) = self.in_order(page);
        let changes: Vec<(&str, i64, &Change)> = to_apply
            .iter()
            .filter_map(|applying| {
                Some((
                    applying.aggregate.as_str(),
                    applying.event.sequence,
                    applying.plan.redis_change()?,
                ))
            })
            .collect();
        let (count, in_redis) = (to_apply.len() as i64, changes.len() as i64);

        let mut client = self.target.get().await?;
        let tx = client.transaction().await?;
        let mut redis = self.redis.clone();
        let redis_side =
            infra::redis_store::apply_all_once_in(&mut redis, &self.generation, &changes);
        let postgres_side = async {
            rows::write(
                &tx,
                to_apply
                    .iter()
                    .flat_map(|applying| applying.plan.writes(&applying.event)),
            )
            .await?;
            log_applied(&tx, &advanced).await?;
            tx.execute(
                "UPDATE replay_progress
                    SET next_block = coalesce($1, next_block),
                        events = events + $2, in_redis = in_redis + $3",
                &[&next_block, &count, &in_redis],
            )
            .await?;
            Ok::<_, tokio_postgres::Error>(())
        };
        let (redis_side, postgres_side) = tokio::join!(redis_side, postgres_side);
        redis_side?;
        postgres_side?;
        tx.commit().await?;
        self.applied.extend(advanced);
        if next_block.is_some() {
            self.bar.inc(read as u64);
        } else {
            // Written since the count the bar began with.
            self.bar.inc_length(count as u64);
            self.bar.inc(count as u64);
        }
        Ok(to_apply.len())
    }

    /// Moves the log of applied events into `applied_sequences` (see [`log_applied`]), in key
    /// order, in one transaction.
    async fn fold_applied(&self) -> Result<(), ReplayError> {
        let mut client = self.target.get().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(
            "INSERT INTO applied_sequences AS applied (aggregate_type, aggregate_id, sequence)
             SELECT aggregate_type, aggregate_id, max(sequence) FROM replay_applied
              GROUP BY aggregate_type, aggregate_id
              ORDER BY aggregate_type, aggregate_id
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                SET sequence = greatest(applied.sequence, EXCLUDED.sequence);
             TRUNCATE replay_applied;",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the Redis generation holds every event Postgres's does: its count of events
    /// applied is at least Postgres's, unless Redis lost data since they were applied (came
    /// back from an older snapshot with the generation's mark in it).
    async fn check_redis_holds_all(&mut self) -> Result<(), ReplayError> {
        let in_postgres: i64 = self
            .target
            .get()
            .await?
            .query_one("SELECT in_redis FROM replay_progress", &[])
            .await?
            .get(0);
        let in_redis: Option<i64> = self.redis.get(self.generation.replayed()).await?;
        let in_redis = in_redis.unwrap_or(0);
        if in_redis < in_postgres {
            return Err(ReplayError::RedisBehind {
                in_redis,
                in_postgres,
            });
        }
        Ok(())
    }

    /// Switches readers and projectors to the new generation, retrying while a live table
    /// stays locked.
    async fn switch(
        &mut self,
        control: &mut tokio_postgres::Client,
        schemas: &Schemas,
        base: &Keys,
        token: &str,
    ) -> Result<Switched, ReplayError> {
        let tables = schemas.tables(control).await?;
        let mut switched = Switched::default();
        // A first look before the pause, so that the look under it reads only what changed
        // since: records written by transactions from this snapshot's oldest on.
        let since: i64 = control
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                &[],
            )
            .await?
            .get(0);
        self.fold_applied().await?;
        let behind = live_ahead(&*control, schemas, None).await?;
        switched.applied = self.apply_after(&behind).await?;
        self.fold_applied().await?;
        for attempt in 0..SWITCH_ATTEMPTS {
            switched.retries = attempt;
            let target = SwitchTarget {
                schemas,
                tables: &tables,
                base,
                token,
                since,
            };
            match self.switch_once(control, &target, &mut switched).await {
                Err(ReplayError::Postgres(error))
                    if error.code()
                        == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) =>
                {
                    tracing::warn!("a live table stayed locked: switching again in a moment");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other.map(|()| switched),
            }
        }
        Err(ReplayError::SwitchLocked)
    }

    async fn switch_once(
        &mut self,
        control: &mut tokio_postgres::Client,
        target: &SwitchTarget<'_>,
        switched: &mut Switched,
    ) -> Result<(), ReplayError> {
        let SwitchTarget {
            schemas,
            tables,
            base,
            token,
            since,
        } = *target;
        let (live, replay) = (
            infra::read_store::quote_identifier(&schemas.live),
            infra::read_store::quote_identifier(&schemas.replay),
        );
        let tx = control.transaction().await?;
        // No rebuild of the Redis models from the live tables meanwhile; then no batch.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REBUILD_LOCK])
            .await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&GENERATION_SWITCH_LOCK],
        )
        .await?;
        let paused = Instant::now();

        // What the live generation applied since the look before the pause, and the new one
        // still lacks.
        let behind = live_ahead(&tx, schemas, Some(since)).await?;
        switched.applied += self.apply_after(&behind).await?;
        self.fold_applied().await?;
        self.check_redis_holds_all().await?;

        // The projectors' position, which they go on from; the operators' dead letters; and
        // events waiting for a predecessor the new generation lacks too (those it has were
        // applied from the store).
        tx.batch_execute(&format!(
            "INSERT INTO {replay}.applied_offsets (topic, partition, \"offset\")
             SELECT topic, partition, \"offset\" FROM {live}.applied_offsets;
             INSERT INTO {replay}.dead_letters
                    (id, topic, partition, \"offset\", key, payload, error, received_at, redriven_at)
             OVERRIDING SYSTEM VALUE
             SELECT id, topic, partition, \"offset\", key, payload, error, received_at, redriven_at
               FROM {live}.dead_letters;
             INSERT INTO {replay}.waiting_events
                    (aggregate_type, aggregate_id, sequence, event, waiting_since, released_at)
             SELECT w.aggregate_type, w.aggregate_id, w.sequence, w.event, w.waiting_since,
                    w.released_at
               FROM {live}.waiting_events w
               LEFT JOIN {replay}.applied_sequences a USING (aggregate_type, aggregate_id)
              WHERE w.sequence > coalesce(a.sequence, 0);"
        ))
        .await?;
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence($1, 'id'),
                               coalesce((SELECT max(id) FROM {replay}.dead_letters), 0) + 1,
                               false)"
            ),
            &[&format!("{replay}.dead_letters")],
        )
        .await?;
        let offsets = tx
            .query(
                &format!(
                    "SELECT topic || '/' || partition, \"offset\" FROM {live}.applied_offsets"
                ),
                &[],
            )
            .await?;
        if !offsets.is_empty() {
            let mut pipe = redis::pipe();
            for row in &offsets {
                pipe.hset(
                    self.generation.offsets(),
                    row.get::<_, String>(0),
                    row.get::<_, i64>(1),
                )
                .ignore();
            }
            let () = pipe.query_async(&mut self.redis).await?;
        }

        let mut moves = format!(
            "SET LOCAL lock_timeout = '{SWITCH_LOCK_WAIT}';
             CREATE SCHEMA {};",
            infra::read_store::quote_identifier(&schemas.replaced)
        );
        for table in tables {
            moves += &format!(
                "ALTER TABLE IF EXISTS {} SET SCHEMA {};
                 ALTER TABLE {} SET SCHEMA {live};",
                Schemas::qualified(&schemas.live, table),
                infra::read_store::quote_identifier(&schemas.replaced),
                Schemas::qualified(&schemas.replay, table),
            );
        }
        let blocking = Instant::now();
        tx.batch_execute(&moves).await?;
        // Redis switches while projectors are still held: none applies a batch to the old
        // generation after this.
        let switched_redis: i64 = redis::Script::new(SWITCH_TO)
            .key(self.generation.building())
            .key(base.current_generation())
            .key(self.generation.ready())
            .key(base.replaying())
            .key(self.generation.replayed())
            .arg(token)
            .arg(self.generation.generation())
            .arg(chrono::Utc::now().to_rfc3339())
            .invoke_async(&mut self.redis)
            .await?;
        if switched_redis != 1 {
            return Err(ReplayError::SwitchRefused);
        }
        tx.commit().await?;
        switched.readers_blocked = blocking.elapsed();
        switched.projectors_paused = paused.elapsed();
        Ok(())
    }
}

/// What a switch moves, and from when the live records are read again under its pause.
#[derive(Clone, Copy)]
struct SwitchTarget<'a> {
    schemas: &'a Schemas,
    /// The read-model tables, moved from the replay's schema to the live one.
    tables: &'a [String],
    base: &'a Keys,
    /// The replay's token, in its Redis generation's `building` mark.
    token: &'a str,
    /// The oldest transaction running at the look before the pause.
    since: i64,
}

/// Switches Redis to the replay's generation (ARGV[2]), declared whole (`ready`, with the
/// time), if its `building` mark still holds the replay's token (ARGV[1]); the replay's own
/// keys go.
const SWITCH_TO: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1], KEYS[4], KEYS[5])
return 1
";

/// The aggregates the live generation has applied further than the new one, each with the new
/// one's last sequence (both schemas are in the read database: one join). `since`: only
/// records written by transactions from that transaction id on (the oldest running when a
/// look before it was taken; a few more are read, never fewer).
async fn live_ahead(
    client: &impl tokio_postgres::GenericClient,
    schemas: &Schemas,
    since: Option<i64>,
) -> Result<Vec<(Aggregate, i64)>, tokio_postgres::Error> {
    let (live, replay) = (
        infra::read_store::quote_identifier(&schemas.live),
        infra::read_store::quote_identifier(&schemas.replay),
    );
    // Under the pause, the live records written since are picked out first (a scan with a
    // cheap filter), and only they are looked up in the new generation's.
    let changed = match since {
        None => "",
        // age(): how many transaction ids ago an id was, both ages counted from the same id
        // (the transaction's, fixed at the first call), circular so safe across wraparound.
        Some(_) => "WHERE age(xmin) <= age(xid($1::text::xid8))",
    };
    let query = format!(
        "WITH live AS MATERIALIZED (
             SELECT aggregate_type, aggregate_id, sequence FROM {live}.applied_sequences {changed})
         SELECT l.aggregate_type, l.aggregate_id, coalesce(r.sequence, 0)
           FROM live l
           LEFT JOIN {replay}.applied_sequences r USING (aggregate_type, aggregate_id)
          WHERE l.sequence > coalesce(r.sequence, 0)"
    );
    let rows = match since {
        None => client.query(&query, &[]).await?,
        Some(since) => client.query(&query, &[&since.to_string()]).await?,
    };
    Ok(rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect())
}

/// Records the last event applied of each aggregate `advanced`, in the page's transaction:
/// appended to `replay_applied`, a log with no index, rather than written into
/// `applied_sequences` (whose key, met in the table's order, is a random place in its index
/// each time: that upsert took most of Postgres's time). [`Replay::fold_applied`] moves the
/// log into `applied_sequences`, in key order, before the switch.
async fn log_applied(
    tx: &deadpool_postgres::Transaction<'_>,
    advanced: &HashMap<Aggregate, i64>,
) -> Result<(), tokio_postgres::Error> {
    if advanced.is_empty() {
        return Ok(());
    }
    let mut types = Vec::with_capacity(advanced.len());
    let mut ids = Vec::with_capacity(advanced.len());
    let mut sequences = Vec::with_capacity(advanced.len());
    for ((aggregate_type, aggregate_id), sequence) in advanced {
        types.push(aggregate_type.as_str());
        ids.push(aggregate_id.as_str());
        sequences.push(*sequence);
    }
    tx.execute(
        "INSERT INTO replay_applied (aggregate_type, aggregate_id, sequence)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
        &[&types, &ids, &sequences],
    )
    .await?;
    Ok(())
}
