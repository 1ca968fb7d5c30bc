//! `projector rebuild` (`make rebuild`): every read model, Postgres and Redis, rebuilt from the
//! whole history by the projections' own code, beside the live ones while the stack serves,
//! then switched to.
//!
//! - **History** is read from the event store, not the topics: it is complete whatever the
//!   broker's retention, and per aggregate in sequence order by its key (see [`history`]).
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
//!   carries over the projectors' offsets and the dead letters, and switches Redis and Postgres
//!   together. Projectors then go on into the new generation; the old one is dropped.
//! - **Resumable**: each page is applied to Redis (idempotently, per aggregate and sequence)
//!   and then to Postgres with the position reached, in one transaction; a replay started
//!   again takes up where the last committed page ended.

mod generation;
mod history;

use std::collections::HashMap;
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

use crate::applied::{execute_pipelined, Aggregate};
use crate::projections::{plan_event, Plan};
use crate::rebuild::{drop_generations_even_replaying, next_generation, REBUILD_LOCK};
use crate::settings::Settings;
pub use generation::Schemas;
use history::{EventKey, History};

/// Held by a replay for as long as it runs: one at a time per read database.
const REPLAY_LOCK: i64 = 0x0000_7265_706c_6179;

/// Catch-up rounds stop once one applies fewer events than this: the rest is applied under
/// the switch's pause.
const CAUGHT_UP: usize = 1_000;
const CATCH_UP_ROUNDS: usize = 5;

/// How long the switch waits for a table lock (a reader's statement still running on a live
/// table) before it lets go and tries again: while it waits, readers queue behind it.
const SWITCH_LOCK_WAIT: &str = "500ms";
const SWITCH_ATTEMPTS: usize = 10;

/// Longer than a reader goes on with the generation it resolved (see `crate::rebuild`).
const OLD_GENERATION_KEPT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Options {
    /// Events read, applied and committed at a time.
    pub page: i64,
    /// Whether to draw a progress bar (on a terminal only, in any case).
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            page: 2_000,
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
    pub read: usize,
    pub reading: Duration,
    /// Events written meanwhile, applied in catch-up rounds.
    pub caught_up: usize,
    pub switch: Switched,
}

impl Replayed {
    /// Events applied per second while reading the history.
    pub fn rate(&self) -> f64 {
        self.read as f64 / self.reading.as_secs_f64().max(1e-9)
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
    #[error("event {event_id} does not follow event {last} of its aggregate")]
    OutOfOrder { event_id: String, last: i64 },
    #[error("{0}: run the rebuild again, it starts over")]
    GenerationLost(#[from] GenerationLost),
    #[error("the live tables stayed locked through {SWITCH_ATTEMPTS} attempts to switch")]
    SwitchLocked,
    #[error("Postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("Postgres: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0:#}")]
    Setup(#[from] anyhow::Error),
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
    let control = infra::read_store::connect_one(url, "").await?;
    let locked: bool = control
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REPLAY_LOCK])
        .await?
        .get(0);
    if !locked {
        return Err(ReplayError::AlreadyRunning);
    }
    let schemas = Schemas::of(&control).await?;
    // A switch that committed and stopped before dropping what it replaced.
    generation::drop_schema(&control, &schemas.replaced).await?;
    let mut redis = infra::redis_store::connect_for_batches(&settings.redis).await?;
    let base = Keys::new(&settings.redis);

    let recorded = schemas.recorded(&control).await?;
    let resumable = match recorded {
        Some(recorded) => resumable(&mut redis, &base, recorded).await?,
        None => None,
    };
    let resumed = resumable.is_some();
    let recorded = match resumable {
        Some(recorded) => recorded,
        None => begin(&control, &mut redis, &base, &schemas, url).await?,
    };
    let target =
        infra::read_store::connect_to_schema(&settings.read_store, &schemas.replay, 2).await?;
    let history = Arc::new(History::connect(expose(&event_store.database_url)).await?);
    let total = history.count().await?;
    let bar = progress_bar(options, total, recorded.events);
    let mut replay = Replay {
        applied: load_applied(&target).await?,
        generation: base.in_generation(recorded.redis_generation),
        history,
        target,
        redis,
        bar,
        page: options.page,
    };
    if resumed {
        tracing::info!(
            generation = recorded.redis_generation,
            applied = recorded.events,
            "taking up the replay that stopped"
        );
    }

    let started = Instant::now();
    let read = if recorded.read_through {
        0
    } else {
        replay.read_history(recorded.after).await?
    };
    let reading = started.elapsed();
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
    let mut control = control;
    let switch = replay
        .switch(&mut control, &schemas, &base, &recorded.token)
        .await?;
    replay.bar.finish_and_clear();

    // Nothing reads these any more: the tables replaced, the replay's own record.
    generation::drop_schema(&control, &schemas.replaced).await?;
    generation::drop_schema(&control, &schemas.replay).await?;
    tokio::time::sleep(OLD_GENERATION_KEPT).await;
    let built = recorded.redis_generation;
    drop_generations_even_replaying(&mut replay.redis, &base, |g| g < built).await?;
    Ok(Replayed {
        generation: built,
        resumed,
        read,
        reading,
        caught_up,
        switch,
    })
}

/// The earlier replay's record, if its Redis generation is still there to build on.
async fn resumable(
    redis: &mut ConnectionManager,
    base: &Keys,
    recorded: generation::Recorded,
) -> Result<Option<generation::Recorded>, ReplayError> {
    let current = infra::redis_store::current(redis, base).await?.generation();
    if current == recorded.redis_generation {
        // It switched Redis and stopped before its Postgres commit: Redis is ahead of the live
        // tables. Marked not whole, it is rebuilt from them by the projectors; this replay
        // starts over.
        let () = redis.del(base.in_generation(current).ready()).await?;
        tracing::warn!("the last replay stopped in its switch: starting over");
        return Ok(None);
    }
    let building = base.in_generation(recorded.redis_generation);
    let (mark, replayed): (Option<String>, Option<i64>) = redis::pipe()
        .get(building.building())
        .get(building.replayed())
        .query_async(redis)
        .await?;
    if mark.as_deref() != Some(recorded.token.as_str()) || replayed.unwrap_or(0) < recorded.events {
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
        after: EventKey::start(),
        events: 0,
    })
}

async fn load_applied(target: &Pool) -> Result<HashMap<Aggregate, i64>, ReplayError> {
    let rows = target
        .get()
        .await?
        .query(
            "SELECT aggregate_type, aggregate_id, sequence FROM applied_sequences",
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

/// Events read and planned (without IO), in key order.
struct Page {
    events: Vec<(PublishedEvent, Plan)>,
    /// The last event read, where the next page begins.
    last: Option<EventKey>,
}

fn plan_page(stored: Vec<StoredEvent>) -> Result<Page, ReplayError> {
    let last = stored.last().map(EventKey::of);
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
    Ok(Page { events, last })
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
    bar: ProgressBar,
    page: i64,
}

impl Replay {
    /// Reads the whole history after `after` and applies it. The next page is read and
    /// planned while one is applied.
    async fn read_history(&mut self, after: EventKey) -> Result<usize, ReplayError> {
        let (pages, mut ready) = tokio::sync::mpsc::channel(2);
        let reader = tokio::spawn({
            let (history, limit) = (self.history.clone(), self.page);
            async move {
                let mut after = after;
                loop {
                    let page = match history.page(&after, limit).await {
                        Ok(page) => page,
                        Err(error) => return Err(ReplayError::from(error)),
                    };
                    let Some(last) = page.last() else {
                        return Ok(());
                    };
                    after = EventKey::of(last);
                    if pages.send(plan_page(page)?).await.is_err() {
                        return Ok(());
                    }
                }
            }
        });
        let mut read = 0;
        while let Some(page) = ready.recv().await {
            read += self.apply(page, true).await?;
        }
        reader.await.map_err(anyhow::Error::from)??;
        self.target
            .get()
            .await?
            .execute("UPDATE replay_progress SET read_through = true", &[])
            .await?;
        Ok(read)
    }

    /// Applies what was written since the history was read: every event of each aggregate
    /// after the last one applied to the new generation.
    async fn catch_up(&mut self) -> Result<usize, ReplayError> {
        let heads = self.history.heads().await?;
        let behind: Vec<(Aggregate, i64)> = heads
            .into_iter()
            .filter_map(|(aggregate, head)| {
                let last = self.applied.get(&aggregate).copied().unwrap_or(0);
                (head > last).then_some((aggregate, last))
            })
            .collect();
        self.apply_after(&behind).await
    }

    /// Applies every event of each aggregate after the sequence given with it.
    async fn apply_after(&mut self, since: &[(Aggregate, i64)]) -> Result<usize, ReplayError> {
        let mut applied = 0;
        for aggregates in since.chunks(self.page as usize) {
            let events = self.history.after(aggregates).await?;
            applied += self.apply(plan_page(events)?, false).await?;
        }
        Ok(applied)
    }

    /// Applies a page to the new generation: its Redis changes, then its SQL with the record
    /// of what is applied (and, while reading the history, of where the page ended) in one
    /// transaction. Redis goes first and drops repeats by itself: a crash between the two
    /// leaves Postgres behind, and the page applied again changes Redis no more.
    async fn apply(&mut self, page: Page, record_position: bool) -> Result<usize, ReplayError> {
        let mut advanced: HashMap<Aggregate, i64> = HashMap::new();
        let mut to_apply: Vec<&(PublishedEvent, Plan)> = vec![];
        for planned in &page.events {
            let event = &planned.0;
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
            if event.sequence != last + 1 {
                return Err(ReplayError::OutOfOrder {
                    event_id: event.event_id.clone(),
                    last,
                });
            }
            advanced.insert(aggregate, event.sequence);
            to_apply.push(planned);
        }
        let redis_keys: Vec<String> = to_apply
            .iter()
            .map(|(event, _)| format!("{}/{}", event.aggregate_type, event.aggregate_id))
            .collect();
        let changes: Vec<(&str, i64, &Change)> = to_apply
            .iter()
            .zip(&redis_keys)
            .filter(|((_, plan), _)| !plan.redis_change().is_empty())
            .map(|((event, plan), key)| (key.as_str(), event.sequence, plan.redis_change()))
            .collect();
        let statements: Vec<_> = to_apply
            .iter()
            .flat_map(|(_, plan)| plan.statements())
            .collect();

        let mut client = self.target.get().await?;
        let tx = client.transaction().await?;
        let mut redis = self.redis.clone();
        let in_redis =
            infra::redis_store::apply_all_once_in(&mut redis, &self.generation, &changes);
        let in_postgres = async {
            execute_pipelined(&tx, &statements).await?;
            store_applied(&tx, &advanced).await?;
            let count = to_apply.len() as i64;
            match page.last.as_ref().filter(|_| record_position) {
                Some(last) => {
                    tx.execute(
                        "UPDATE replay_progress
                            SET after_type = $1, after_id = $2, after_sequence = $3,
                                events = events + $4",
                        &[
                            &last.aggregate_type,
                            &last.aggregate_id,
                            &last.sequence,
                            &count,
                        ],
                    )
                    .await?
                }
                None => {
                    tx.execute("UPDATE replay_progress SET events = events + $1", &[&count])
                        .await?
                }
            };
            Ok::<_, tokio_postgres::Error>(())
        };
        let (in_redis, in_postgres) = tokio::join!(in_redis, in_postgres);
        in_redis?;
        in_postgres?;
        tx.commit().await?;
        let count = to_apply.len();
        self.applied.extend(advanced);
        if record_position {
            self.bar.inc(page.events.len() as u64);
        } else {
            // Written since the count the bar began with.
            self.bar.inc_length(count as u64);
            self.bar.inc(count as u64);
        }
        Ok(count)
    }

    /// Whether the Redis generation holds every event Postgres's does: its count of events
    /// applied is at least Postgres's, unless Redis lost data since they were applied (came
    /// back from an older snapshot with the generation's mark in it).
    async fn check_redis_holds_all(&mut self) -> Result<(), ReplayError> {
        let in_postgres: i64 = self
            .target
            .get()
            .await?
            .query_one("SELECT events FROM replay_progress", &[])
            .await?
            .get(0);
        let in_redis: Option<i64> = self.redis.get(self.generation.replayed()).await?;
        if in_redis.unwrap_or(0) < in_postgres {
            return Err(GenerationLost::Lost.into());
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
        for attempt in 0..SWITCH_ATTEMPTS {
            switched.retries = attempt;
            match self
                .switch_once(control, schemas, &tables, base, token, &mut switched)
                .await
            {
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
        schemas: &Schemas,
        tables: &[String],
        base: &Keys,
        token: &str,
        switched: &mut Switched,
    ) -> Result<(), ReplayError> {
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

        // Where the live generation stands: what it has that the new one lacks is applied.
        let live_applied = tx
            .query(
                &format!(
                    "SELECT aggregate_type, aggregate_id, sequence FROM {live}.applied_sequences"
                ),
                &[],
            )
            .await?;
        let behind: Vec<(Aggregate, i64)> = live_applied
            .iter()
            .filter_map(|row| {
                let aggregate: Aggregate = (row.get(0), row.get(1));
                let there: i64 = row.get(2);
                let here = self.applied.get(&aggregate).copied().unwrap_or(0);
                (there > here).then_some((aggregate, here))
            })
            .collect();
        switched.applied = self.apply_after(&behind).await?;
        self.check_redis_holds_all().await?;

        // The projectors' position, which they go on from, and the operators' dead letters.
        tx.batch_execute(&format!(
            "INSERT INTO {replay}.applied_offsets (topic, partition, \"offset\")
             SELECT topic, partition, \"offset\" FROM {live}.applied_offsets;
             INSERT INTO {replay}.dead_letters
                    (id, topic, partition, \"offset\", key, payload, error, received_at, redriven_at)
             OVERRIDING SYSTEM VALUE
             SELECT id, topic, partition, \"offset\", key, payload, error, received_at, redriven_at
               FROM {live}.dead_letters;"
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
            return Err(GenerationLost::Lost.into());
        }
        tx.commit().await?;
        switched.readers_blocked = blocking.elapsed();
        switched.projectors_paused = paused.elapsed();
        Ok(())
    }
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

/// Records the last event applied of each aggregate `advanced`, in the page's transaction.
async fn store_applied(
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
        "INSERT INTO applied_sequences (aggregate_type, aggregate_id, sequence)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
         ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET sequence = EXCLUDED.sequence",
        &[&types, &ids, &sequences],
    )
    .await?;
    Ok(())
}
