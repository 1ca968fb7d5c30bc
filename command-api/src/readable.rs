//! Read after write: a write is answered once what it wrote is readable.
//!
//! Every command's events are projected asynchronously (outbox, relay, broker, projector). A
//! request that wrote waits, once its events are committed and before it is answered, until
//! the projectors say its aggregates are applied up to its events, in Postgres and in Redis
//! ([`infra::read_after_write`]): every read that starts after the answer, through any query
//! API, then reflects the write. Projectors say so after each batch, relays when they park an
//! event, as Postgres notifications; this process listens on one connection to each store
//! and wakes the requests waiting for the aggregates named. A waiting request holds no
//! connection or other permit, only a place in a map.
//!
//! The wait is bounded (`READ_AFTER_WRITE_WAIT_MS`): past it, the write is still answered as
//! a success (it is durable), saying it will show shortly; and until a projector reports
//! progress again, writes do not wait at all, so an outage does not hold every request for
//! the whole bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infra::backoff::Backoff;
use infra::event_store::EventStore;
use infra::metrics::{READ_AFTER_WRITE_WAITS, READ_AFTER_WRITE_WAIT_DURATION};
use infra::read_after_write::{
    parse_payload, projected, Notice, Reached, APPLIED_CHANNEL, PARKED_CHANNEL,
};
use infra::redis_store::Keys;
use infra::settings::{expose, ReadAfterWriteSettings};
use infra::written::Written;
use redis::aio::ConnectionManager;
use secrecy::SecretString;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Aggregate = (String, String);

/// How many aggregates' latest notices are remembered: a notice that arrives before its
/// request starts waiting (the projector was quicker than this process) is found there.
const REMEMBERED: u64 = 100_000;

/// How long a notice is remembered: far longer than a request takes from its commit to its
/// wait.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);

/// Connections to the read store for the lookups of aggregates commands left unchanged
/// (repeated likes, follows): each a short statement.
const LOOKUPS_AT_ONCE: u32 = 4;

/// How a write's wait ended, and what its answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Readable (or the wait is off): the usual success.
    Readable,
    /// Saved, and not yet readable everywhere: its `status_msg` says it will show shortly.
    Saved,
}

/// The success message of a write answered before it is readable.
pub const SAVED: &str = "saved; it will show shortly";

/// The requests waiting for their writes to be readable; cheap to clone.
#[derive(Clone)]
pub struct Readable(Option<Arc<Waits>>);

struct Waits {
    bound: Duration,
    waiting: Mutex<HashMap<Aggregate, Vec<Waiter>>>,
    /// Per aggregate, the latest progress and stop heard of.
    heard: moka::sync::Cache<Aggregate, Heard>,
    /// A wait hit its bound and no projector has reported progress since.
    stalled: AtomicBool,
    event_store: EventStore,
    /// For the one lookup of an aggregate a command left unchanged.
    read_store: PgPool,
    redis: ConnectionManager,
    /// Under `REDIS_KEY_PREFIX`: the generation pointer.
    keys: Keys,
}

struct Waiter {
    sequence: i64,
    wake: oneshot::Sender<Reached>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Heard {
    /// Applied up to this sequence (Postgres and Redis, or Postgres only).
    progress: Option<(Reached, i64)>,
    /// Stopped at this sequence (dead-lettered, held back, parked).
    stop: Option<(Reached, i64)>,
}

impl Heard {
    /// How the wait for `sequence` ends, if what was heard ends it.
    fn ends(&self, sequence: i64) -> Option<Reached> {
        match (self.progress, self.stop) {
            (Some((reached, applied)), _) if applied >= sequence => Some(reached),
            (_, Some((reached, stopped))) if sequence >= stopped => Some(reached),
            _ => None,
        }
    }

    fn with(mut self, notice: &Notice) -> Self {
        let slot = if notice.reached.is_progress() {
            &mut self.progress
        } else {
            &mut self.stop
        };
        let later = slot.is_none_or(|(_, sequence)| notice.sequence >= sequence);
        if later {
            *slot = Some((notice.reached, notice.sequence));
        }
        // A stop an operator has since cleared (a dead letter redriven) stops nothing more.
        if let (Some((_, applied)), Some((_, stopped))) = (self.progress, self.stop) {
            if applied >= stopped {
                self.stop = None;
            }
        }
        self
    }
}

/// The listening tasks, stopped together.
pub struct Listening {
    tasks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Listening {
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl Readable {
    /// Writes answered at once (`READ_AFTER_WRITE=off`).
    pub fn off() -> Self {
        Self(None)
    }

    /// Starts listening to the projectors (on `read_store`) and the relays (on the event
    /// store), unless the settings turn the wait off.
    pub fn start(
        settings: &ReadAfterWriteSettings,
        read_store: &SecretString,
        event_store: &SecretString,
        store: EventStore,
        (redis, keys): (ConnectionManager, Keys),
    ) -> anyhow::Result<(Self, Option<Listening>)> {
        if !settings.read_after_write {
            return Ok((Self::off(), None));
        }
        let waits = Arc::new(Waits {
            bound: settings.wait(),
            waiting: Mutex::new(HashMap::new()),
            // Least recently used out: a new aggregate's notice is always kept (the default
            // policy may turn a key seen once away, and each new like is such a key).
            heard: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(REMEMBERED_FOR)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
            stalled: AtomicBool::new(false),
            event_store: store,
            read_store: PgPoolOptions::new()
                .max_connections(LOOKUPS_AT_ONCE)
                .acquire_timeout(Duration::from_secs(1))
                .connect_lazy(expose(read_store))?,
            redis,
            keys,
        });
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(waits.clone().listen(
                expose(read_store).to_owned(),
                APPLIED_CHANNEL,
                stop.clone(),
            )),
            tokio::spawn(waits.clone().listen(
                expose(event_store).to_owned(),
                PARKED_CHANNEL,
                stop.clone(),
            )),
        ];
        Ok((Self(Some(waits)), Some(Listening { tasks, stop })))
    }

    /// Waits until what `written` wrote is readable, within the bound, and says how to answer.
    pub async fn wait(&self, written: Vec<Written>) -> Answer {
        let Some(waits) = &self.0 else {
            metrics::counter!(READ_AFTER_WRITE_WAITS, "reached" => "off").increment(1);
            return Answer::Readable;
        };
        let written: Vec<Written> = written
            .into_iter()
            .filter(|written| projected(written.aggregate_type))
            .collect();
        if written.is_empty() {
            return Answer::Readable;
        }
        if waits.stalled.load(Ordering::Relaxed) {
            metrics::counter!(READ_AFTER_WRITE_WAITS, "reached" => "stalled").increment(1);
            return Answer::Saved;
        }
        let started = Instant::now();
        let reached = waits.wait(written).await;
        metrics::histogram!(READ_AFTER_WRITE_WAIT_DURATION).record(started.elapsed().as_secs_f64());
        let label = reached.map_or("bound", Reached::name);
        metrics::counter!(READ_AFTER_WRITE_WAITS, "reached" => label).increment(1);
        match reached {
            Some(Reached::Applied | Reached::PostgresOnly) => Answer::Readable,
            Some(stopped) => {
                tracing::warn!(
                    reached = stopped.name(),
                    "a write will not show until an operator acts"
                );
                Answer::Saved
            }
            None => {
                if !waits.stalled.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        bound = ?waits.bound,
                        "a write was not readable within its bound (projector, broker or relay down or behind): writes are answered without waiting until a projector reports progress"
                    );
                }
                Answer::Saved
            }
        }
    }
}

impl Waits {
    /// How the waits for `written` ended (the worst of them); None if the bound passed.
    async fn wait(&self, written: Vec<Written>) -> Option<Reached> {
        let deadline = tokio::time::Instant::now() + self.bound;
        let mut ended = vec![];
        let mut unchanged = vec![];
        // Dropped after the receivers below (declared after it), even when the request is
        // dropped mid-wait (its client went away): takes its waiters out of the map.
        let mut registered = Registered {
            waits: self,
            aggregates: vec![],
        };
        let mut pending = vec![];
        for written in written {
            let aggregate = (written.aggregate_type.to_owned(), written.aggregate_id);
            let sequence = match written.sequence {
                Some(sequence) => sequence,
                // It decided no event: its aggregate's last one is what it stands on.
                None => match self
                    .event_store
                    .last_sequence(&aggregate.0, &aggregate.1)
                    .await
                {
                    Ok(0) => continue,
                    Ok(sequence) => {
                        unchanged.push(aggregate.clone());
                        sequence
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not read an aggregate's last event");
                        return None;
                    }
                },
            };
            match self.register(aggregate.clone(), sequence) {
                Ok(reached) => ended.push(reached),
                Err(woken) => {
                    registered.aggregates.push(aggregate.clone());
                    pending.push((aggregate, sequence, woken));
                }
            }
        }
        // An aggregate a command left unchanged was most likely applied long ago, before
        // anything was heard of it here: the read stores say so once.
        for aggregate in unchanged {
            let Some(at) = pending.iter().position(|(waited, ..)| *waited == aggregate) else {
                continue;
            };
            if let Some(reached) = self.applied_before(&aggregate, pending[at].1).await {
                pending.swap_remove(at);
                ended.push(reached);
            }
        }
        let woken = futures::future::join_all(pending.into_iter().map(|(_, _, woken)| woken));
        let woken = tokio::time::timeout_at(deadline, woken).await.ok()?;
        ended.extend(woken.into_iter().filter_map(Result::ok));
        Some(
            ended
                .into_iter()
                .max_by_key(|reached| severity(*reached))
                .unwrap_or(Reached::Applied),
        )
    }

    /// Waits for `aggregate` to reach `sequence`, unless what was heard already says how it
    /// ends.
    fn register(
        &self,
        aggregate: Aggregate,
        sequence: i64,
    ) -> Result<Reached, oneshot::Receiver<Reached>> {
        let mut waiting = self.waiting.lock().expect("no panic while holding it");
        // Read under the lock the listener takes to wake: a notice is either heard here or
        // wakes the waiter registered here.
        if let Some(reached) = self
            .heard
            .get(&aggregate)
            .and_then(|heard| heard.ends(sequence))
        {
            return Ok(reached);
        }
        let (wake, woken) = oneshot::channel();
        waiting
            .entry(aggregate)
            .or_default()
            .push(Waiter { sequence, wake });
        Err(woken)
    }

    /// How far the projectors applied `aggregate`, if up to `sequence`: in Postgres (their
    /// record of applied sequences), and in Redis (its own record, in the generation the query
    /// APIs read). A Redis that does not answer counts as away.
    async fn applied_before(&self, aggregate: &Aggregate, sequence: i64) -> Option<Reached> {
        let in_postgres: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            "SELECT sequence FROM applied_sequences
              WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(&aggregate.0)
        .bind(&aggregate.1)
        .fetch_optional(&self.read_store)
        .await;
        match in_postgres {
            Ok(Some(applied)) if applied >= sequence => {}
            Ok(_) => return None,
            Err(error) => {
                tracing::warn!(%error, "could not read what the projectors applied");
                return None;
            }
        }
        let in_redis = async {
            let mut redis = self.redis.clone();
            let keys = infra::redis_store::current(&mut redis, &self.keys).await?;
            let (hash, field) = keys.applied(&format!("{}/{}", aggregate.0, aggregate.1));
            redis::cmd("HGET")
                .arg(hash)
                .arg(field)
                .query_async::<Option<i64>>(&mut redis)
                .await
        };
        match in_redis.await {
            Ok(Some(applied)) if applied >= sequence => Some(Reached::Applied),
            // On its way (the batch's Redis part follows its commit): its notice comes.
            Ok(_) => None,
            Err(_) => Some(Reached::PostgresOnly),
        }
    }

    /// Remembers `notice` and ends the waits it ends.
    fn wake(&self, notice: &Notice) {
        let aggregate = (notice.aggregate_type.clone(), notice.aggregate_id.clone());
        let mut waiting = self.waiting.lock().expect("no panic while holding it");
        let heard = self.heard.get(&aggregate).unwrap_or_default().with(notice);
        self.heard.insert(aggregate.clone(), heard);
        if let Some(waiters) = waiting.get_mut(&aggregate) {
            let mut kept = vec![];
            for waiter in waiters.drain(..) {
                match heard.ends(waiter.sequence) {
                    Some(reached) => {
                        let _ = waiter.wake.send(reached);
                    }
                    None if !waiter.wake.is_closed() => kept.push(waiter),
                    None => {}
                }
            }
            if kept.is_empty() {
                waiting.remove(&aggregate);
            } else {
                *waiters = kept;
            }
        }
        if notice.reached.is_progress() {
            self.stalled.store(false, Ordering::Relaxed);
        }
    }

    /// Looks up, in the read stores, every aggregate requests wait for, and wakes those
    /// applied: for after notices may have been lost.
    async fn look_up_waiting(self: Arc<Self>) {
        let waited: Vec<(Aggregate, i64)> = {
            let waiting = self.waiting.lock().expect("no panic while holding it");
            waiting
                .iter()
                .filter_map(|(aggregate, waiters)| {
                    let last = waiters.iter().map(|waiter| waiter.sequence).max()?;
                    Some((aggregate.clone(), last))
                })
                .collect()
        };
        for ((aggregate_type, aggregate_id), sequence) in waited {
            let aggregate = (aggregate_type, aggregate_id);
            if let Some(reached) = self.applied_before(&aggregate, sequence).await {
                self.wake(&Notice {
                    reached,
                    sequence,
                    aggregate_type: aggregate.0,
                    aggregate_id: aggregate.1,
                });
            }
        }
    }

    /// Listens on `channel` of the database at `url` until `stop`, reconnecting after a loss
    /// (what was sent meanwhile is missed: its requests answer at their bound).
    async fn listen(self: Arc<Self>, url: String, channel: &'static str, stop: CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            let listened = async {
                let mut listener = PgListener::connect(&url).await?;
                listener.listen(channel).await?;
                loop {
                    match listener.try_recv().await? {
                        Some(notification) => {
                            backoff = Backoff::default();
                            for notice in parse_payload(notification.payload()) {
                                self.wake(&notice);
                            }
                        }
                        None => {
                            tracing::warn!(channel, "lost the connection notices come on");
                            // What was told meanwhile is lost: the stores say it instead.
                            tokio::spawn(self.clone().look_up_waiting());
                        }
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                Err(error) = listened => {
                    let pause = backoff.next();
                    tracing::warn!(channel, %error, retry_in = ?pause, "cannot listen for notices");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}

/// A request's waiters: taken out of the map once it stops waiting, however it stops.
struct Registered<'a> {
    waits: &'a Waits,
    aggregates: Vec<Aggregate>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if self.aggregates.is_empty() {
            return;
        }
        let mut waiting = self
            .waits
            .waiting
            .lock()
            .expect("no panic while holding it");
        for aggregate in &self.aggregates {
            if let Some(waiters) = waiting.get_mut(aggregate) {
                waiters.retain(|waiter| !waiter.wake.is_closed());
                if waiters.is_empty() {
                    waiting.remove(aggregate);
                }
            }
        }
    }
}

/// Which ending a request with several waits reports: the worst.
fn severity(reached: Reached) -> u8 {
    match reached {
        Reached::Applied => 0,
        Reached::PostgresOnly => 1,
        Reached::HeldBack | Reached::DeadLettered | Reached::Parked => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(reached: Reached, sequence: i64) -> Notice {
        Notice {
            reached,
            sequence,
            aggregate_type: "like".into(),
            aggregate_id: "1:2".into(),
        }
    }

    #[test]
    fn progress_ends_the_waits_at_or_before_it() {
        let heard = Heard::default().with(&notice(Reached::Applied, 3));
        assert_eq!(heard.ends(2), Some(Reached::Applied));
        assert_eq!(heard.ends(3), Some(Reached::Applied));
        assert_eq!(heard.ends(4), None);
    }

    #[test]
    fn a_stop_ends_the_waits_at_or_after_it() {
        let heard = Heard::default()
            .with(&notice(Reached::PostgresOnly, 2))
            .with(&notice(Reached::DeadLettered, 3));
        assert_eq!(heard.ends(2), Some(Reached::PostgresOnly));
        assert_eq!(heard.ends(5), Some(Reached::DeadLettered));
    }

    #[test]
    fn an_older_notice_heard_late_does_not_take_progress_back() {
        let heard = Heard::default()
            .with(&notice(Reached::Applied, 5))
            .with(&notice(Reached::PostgresOnly, 2));
        assert_eq!(heard.ends(5), Some(Reached::Applied));
    }
}
