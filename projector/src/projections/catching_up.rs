//! What this process knows of Redis while it is behind the Postgres read models: since when
//! it failed (batches leave it alone a while), why it is behind (for `/readyz` and a metric),
//! and the Redis parts of batches applied to Postgres while Redis was being rebuilt, kept to
//! be made, in order, once the rebuild is over. Shared with the rebuild this process runs in
//! the background, which makes them as it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infra::redis_store::Keys;
use redis::aio::ConnectionManager;

use super::plan::Unmade;

/// Events whose Redis changes wait for a rebuild to end, at most: past that they are dropped,
/// and Redis, left behind, is rebuilt once more afterwards.
const DEFERRED_AT_MOST: usize = 200_000;

/// How long batches leave Redis alone after it failed to answer; doubled with each failure in
/// a row (a full Redis refuses the rebuild that would catch it up too, and every rebuild reads
/// every table), up to [`REDIS_RETRY_AT_MOST`].
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(2);
const REDIS_RETRY_AT_MOST: Duration = Duration::from_secs(60);

/// Why Redis is behind the Postgres read models, while it is: shared with the projector's
/// `/readyz`, and shown as [`infra::metrics::PROJECTOR_REDIS_BEHIND`].
#[derive(Clone, Default)]
pub struct RedisBehind(Arc<Mutex<Option<String>>>);

impl RedisBehind {
    /// Why Redis is behind, if it is.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().expect("not poisoned").clone()
    }

    fn set(&self, reason: Option<String>) {
        metrics::gauge!(infra::metrics::PROJECTOR_REDIS_BEHIND).set(if reason.is_some() {
            1.0
        } else {
            0.0
        });
        *self.0.lock().expect("not poisoned") = reason;
    }
}

/// Where a rebuild that batches wait for runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildBy {
    /// This process, in the background.
    Us,
    /// Another process (a projector, an operator's `rebuild-redis`, a replay's switch).
    Another,
}

#[derive(Clone, Default)]
pub struct CatchingUp {
    /// When Redis last failed (did not answer, refused writes), if it has not taken a batch
    /// since, and how long batches leave it alone from then.
    away: Arc<Mutex<Option<(Instant, Duration)>>>,
    behind: RedisBehind,
    deferred: Arc<tokio::sync::Mutex<Vec<Unmade>>>,
    /// Whether this process's own rebuild runs. Cleared under the `deferred` lock, once the
    /// changes kept for after it are made: a batch keeping its changes holds that lock, so it
    /// either keeps them before they are made or finds the rebuild over.
    rebuilding: Arc<AtomicBool>,
}

impl CatchingUp {
    pub fn behind(&self) -> RedisBehind {
        self.behind.clone()
    }

    /// Whether to ask Redis: not for a while after it failed, so that the Postgres read
    /// models keep up without waiting for its timeouts (or its refusals) at every batch.
    pub fn answers(&self) -> bool {
        let away = self.away.lock().expect("not poisoned");
        away.is_none_or(|(since, wait)| since.elapsed() >= wait)
    }

    /// Redis failed (or so did a rebuild of it): batches leave it alone a while.
    pub fn away(&self, error: &str) {
        // The first reason stays: later batches only skip Redis for its sake.
        if self.behind.reason().is_none() {
            self.behind.set(Some(error.to_owned()));
        }
        let mut away = self.away.lock().expect("not poisoned");
        let wait = match *away {
            Some((since, wait)) if since.elapsed() < wait => return,
            Some((_, wait)) => (wait * 2).min(REDIS_RETRY_AT_MOST),
            None => REDIS_RETRY_AFTER,
        };
        tracing::warn!(
            error,
            retry_in = ?wait,
            "Redis did not answer, refused writes, or could not be rebuilt: applying events to Postgres only, Redis is rebuilt once it takes them"
        );
        *away = Some((Instant::now(), wait));
    }

    /// Redis took a batch, or was found whole: it is asked again at every batch.
    pub fn back(&self) {
        *self.away.lock().expect("not poisoned") = None;
        if self.behind.reason().is_some() {
            tracing::info!("Redis has caught up with the Postgres read models");
            self.behind.set(None);
        }
    }

    /// Whether this process's own rebuild runs.
    pub fn rebuilding_here(&self) -> bool {
        self.rebuilding.load(Ordering::Acquire)
    }

    /// Marks this process's rebuild as started; false if one already runs.
    pub fn start_rebuilding(&self) -> bool {
        !self.rebuilding.swap(true, Ordering::AcqRel)
    }

    /// Ends this process's rebuild: the changes kept for after it are made (unless Redis
    /// failed meanwhile), then batches go to Redis again.
    pub async fn rebuilt(&self, redis: &ConnectionManager, keys: &Keys) {
        let mut deferred = self.deferred.lock().await;
        let left = self.make(&mut deferred, redis, keys).await;
        self.rebuilding.store(false, Ordering::Release);
        if left == Some(false) && deferred.is_empty() {
            self.back();
        }
    }

    /// Makes the Redis parts kept while Redis was rebuilt, in order; whether none is left.
    /// A Redis that fails meanwhile is Redis away: they are dropped (Redis, left behind, is
    /// rebuilt once it answers), and so is a Redis not asked for now.
    pub async fn make_deferred(&self, redis: &ConnectionManager, keys: &Keys) -> bool {
        let mut deferred = self.deferred.lock().await;
        self.make(&mut deferred, redis, keys).await != Some(true)
    }

    /// Some(whether some are left: Redis not whole), or None when Redis is away.
    async fn make(
        &self,
        deferred: &mut Vec<Unmade>,
        redis: &ConnectionManager,
        keys: &Keys,
    ) -> Option<bool> {
        if !deferred.is_empty() && !self.answers() {
            return None;
        }
        while let Some(first) = deferred.first() {
            match first.make(redis, keys).await {
                Ok(true) => {
                    deferred.remove(0);
                }
                Ok(false) => return Some(true),
                Err(error) => {
                    deferred.clear();
                    self.away(&error.to_string());
                    return None;
                }
            }
        }
        Some(false)
    }

    /// Keeps a batch's Redis part for when the rebuild `by` runs is over; false (nothing
    /// kept) when it is this process's and it is over already: the batch is to be made now.
    pub async fn defer(&self, unmade: Unmade, by: RebuildBy) -> bool {
        let mut deferred = self.deferred.lock().await;
        if by == RebuildBy::Us && !self.rebuilding_here() {
            return false;
        }
        let held: usize = deferred.iter().map(Unmade::events).sum();
        if held + unmade.events() > DEFERRED_AT_MOST {
            deferred.clear();
            self.away("too many batches waited for a Redis rebuild to end: Redis is rebuilt once more after it");
            return true;
        }
        if deferred.is_empty() {
            tracing::info!(?by, "Redis is being rebuilt: applying events to Postgres, their Redis changes once the rebuild is over");
        }
        if self.behind.reason().is_none() {
            self.behind
                .set(Some("being rebuilt: changes kept for after it".to_owned()));
        }
        deferred.push(unmade);
        true
    }
}
