//! Read models, one module per aggregate whose events they follow. Each module works out a
//! [`Plan`] for an event, without IO; the plan is then carried out against Postgres and Redis.

mod comments;
mod conversations;
mod follows;
mod likes;
mod plan;
pub(crate) mod rows;
mod users;
mod videos;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cqrs_es::Aggregate;
use domain::comment::Comment;
use domain::conversation::Conversation;
use domain::follow::Follow;
use domain::like::Like;
use domain::user::User;
use domain::video::Video;
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;
use redis::aio::ConnectionManager;

use plan::{execute_all, InRedis};
pub use plan::{Item, Plan, Source, Unmade};

use crate::dead_letters::Received;
use crate::span::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Delivered before: nothing changed.
    AlreadyApplied,
    /// An aggregate type no read model follows.
    Ignored,
    /// Unreadable: kept in `dead_letters`, and its aggregate held back after it.
    DeadLettered,
    /// Kept in `dead_letters` behind an earlier dead letter of its aggregate.
    HeldBack,
    /// Kept in `waiting_events` until the event before it in its aggregate comes.
    Waiting,
}

impl Outcome {
    /// Its label in the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::AlreadyApplied => "repeat",
            Self::Ignored => "ignored",
            Self::DeadLettered => "dead_lettered",
            Self::HeldBack => "held_back",
            Self::Waiting => "waiting",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event cannot be understood; retrying will not help.
    #[error("unreadable event: {0}")]
    Unreadable(#[from] EnvelopeError),
    /// A read store failed; the event is to be applied again.
    #[error("read store: {0}")]
    Store(String),
}

impl From<tokio_postgres::Error> for ProjectionError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Store(error.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for ProjectionError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Store(error.to_string())
    }
}

/// Every read model, by the aggregate type it follows.
pub struct Projections {
    pool: deadpool_postgres::Pool,
    redis: ConnectionManager,
    /// Under `REDIS_KEY_PREFIX`: the generations' pointer, the rebuild's keys.
    keys: Keys,
    /// When Redis last failed (did not answer, refused writes), if it has not taken a batch
    /// since, and how long batches leave it alone from then.
    redis_away: Mutex<Option<(Instant, Duration)>>,
    redis_behind: RedisBehind,
    /// The Redis parts of batches applied to Postgres while another process rebuilt Redis:
    /// made, in order, once the rebuild is over, before the next batch's.
    deferred: tokio::sync::Mutex<Vec<Unmade>>,
}

/// Events whose Redis changes wait for a rebuild to end, at most: past that they are dropped,
/// and Redis, left behind, is rebuilt once more afterwards.
const DEFERRED_AT_MOST: usize = 200_000;

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

/// Longer than a batch takes between its Postgres commit and its Redis changes.
const IN_FLIGHT: Duration = Duration::from_secs(2);

/// How long batches leave Redis alone after it failed to answer; doubled with each failure in
/// a row (a full Redis refuses the rebuild that would catch it up too, and every rebuild reads
/// every table), up to [`REDIS_RETRY_AT_MOST`].
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(2);
const REDIS_RETRY_AT_MOST: Duration = Duration::from_secs(60);

impl Projections {
    pub fn new(pool: deadpool_postgres::Pool, redis: ConnectionManager, keys: Keys) -> Self {
        Self {
            pool,
            redis,
            keys,
            redis_away: Mutex::new(None),
            redis_behind: RedisBehind::default(),
            deferred: tokio::sync::Mutex::new(vec![]),
        }
    }

    /// Whether Redis is behind, for the projector's readiness.
    pub fn redis_behind(&self) -> RedisBehind {
        self.redis_behind.clone()
    }

    /// The aggregate types whose topics the projector reads.
    pub fn aggregate_types() -> &'static [&'static str] {
        &[
            User::TYPE,
            Video::TYPE,
            Like::TYPE,
            Comment::TYPE,
            Follow::TYPE,
            Conversation::TYPE,
        ]
    }

    /// What `event` changes in the read models; None for aggregates no read model follows.
    pub fn plan(&self, event: &PublishedEvent) -> Result<Option<Plan>, EnvelopeError> {
        plan_event(event)
    }

    /// A message from the broker, read and planned (without IO).
    pub fn read(&self, received: Received) -> Item {
        let planned = PublishedEvent::from_json(received.payload.as_deref().unwrap_or_default())
            .and_then(|event| Ok((self.plan(&event)?, event)));
        match planned {
            Ok((Some(plan), event)) => Item::Event {
                event,
                plan,
                source: Source::Broker(received),
            },
            Ok((None, _)) => Item::Ignored,
            Err(error) => Item::Unreadable {
                received,
                reason: error.to_string(),
            },
        }
    }

    /// Applies `event` to every read model, first rebuilding the Redis ones from Postgres if
    /// they are not whole (Redis lost its data, or an operator rebuilt them meanwhile).
    /// It is not held back behind dead letters: what redrives them uses it.
    pub async fn apply(&self, event: PublishedEvent) -> Result<Outcome, ProjectionError> {
        let Some(plan) = self.plan(&event)? else {
            return Ok(Outcome::Ignored);
        };
        let item = Item::Event {
            event,
            plan,
            source: Source::Redrive,
        };
        Ok(self.execute(&[item], &Span::default()).await?[0])
    }

    /// Carries out a batch, in order: one read-store commit and one Redis round trip for it
    /// all (see [`plan::execute_all`]).
    /// `span`: the messages the items came in (none for redriven events).
    pub async fn execute(
        &self,
        items: &[Item],
        span: &Span,
    ) -> Result<Vec<Outcome>, ProjectionError> {
        // A rebuild takes in what an attempt applied to Postgres, so the next attempt finds
        // it applied everywhere: it was applied all the same.
        let mut outcomes: Vec<Outcome> = vec![];
        loop {
            // Batches from the broker wait behind those deferred while Redis was rebuilt
            // elsewhere; Postgres goes on meanwhile.
            let deferring = !span.is_empty() && !self.make_deferred().await;
            let redis = (self.redis_answers() && !deferring).then_some(&self.redis);
            let executed = execute_all(items, span, &self.pool, redis, &self.keys).await?;
            if outcomes.is_empty() {
                outcomes = executed.outcomes;
            } else {
                for (outcome, now) in outcomes.iter_mut().zip(executed.outcomes) {
                    if *outcome != Outcome::Applied {
                        *outcome = now;
                    }
                }
            }
            let not_made = match executed.redis {
                InRedis::Made => {
                    self.redis_back();
                    return Ok(outcomes);
                }
                InRedis::Unreachable(error) if !deferring => {
                    self.redis_away(&error);
                    if span.is_empty() {
                        // A redriven event comes from no partition: no offset record would
                        // show Redis missing it. It is applied to both stores, or left.
                        return Err(ProjectionError::Store(error));
                    }
                    return Ok(outcomes);
                }
                // Not whole, or behind deferred batches still not made.
                _ => executed.unmade,
            };
            if !span.is_empty() && self.rebuild_under_way().await? {
                if let Some(unmade) = not_made {
                    self.defer(unmade).await;
                }
                return Ok(outcomes);
            }
            // No rebuild under way: Redis lost the models, or the rebuild is over. Made whole
            // if need be; then the deferred batches and this one are made again.
            if let Err(error) = self.rebuild_redis_unless_whole().await {
                // Redis failing during the rebuild is Redis away: the Postgres read models go
                // on, and the rebuild is made again once it answers.
                let away = error
                    .downcast_ref::<redis::RedisError>()
                    .is_some_and(plan::unreachable);
                if !away || span.is_empty() {
                    return Err(ProjectionError::Store(format!("{error:#}")));
                }
                self.redis_away(&format!("{error:#}"));
                return Ok(outcomes);
            }
        }
    }

    /// Makes the Redis parts deferred while Redis was rebuilt, in order; whether none is left.
    /// A Redis that fails meanwhile is Redis away: they are dropped (Redis, left behind, is
    /// rebuilt once it answers).
    async fn make_deferred(&self) -> bool {
        let mut deferred = self.deferred.lock().await;
        if !deferred.is_empty() && !self.redis_answers() {
            return true;
        }
        while let Some(first) = deferred.first() {
            match first.make(&self.redis, &self.keys).await {
                Ok(true) => {
                    deferred.remove(0);
                }
                Ok(false) => return false,
                Err(error) => {
                    deferred.clear();
                    self.redis_away(&error.to_string());
                    return true;
                }
            }
        }
        true
    }

    /// Keeps a batch's Redis part for when the rebuild under way is over.
    async fn defer(&self, unmade: Unmade) {
        let mut deferred = self.deferred.lock().await;
        let held: usize = deferred.iter().map(Unmade::events).sum();
        if held + unmade.events() > DEFERRED_AT_MOST {
            deferred.clear();
            self.redis_away("too many batches waited for a Redis rebuild to end: Redis is rebuilt once more after it");
            return;
        }
        if deferred.is_empty() {
            tracing::info!("Redis is being rebuilt elsewhere: applying events to Postgres, their Redis changes once the rebuild is over");
        }
        if self.redis_behind.reason().is_none() {
            self.redis_behind.set(Some(
                "being rebuilt elsewhere: changes kept for after it".to_owned(),
            ));
        }
        deferred.push(unmade);
    }

    /// Whether another process holds the rebuild lock now.
    async fn rebuild_under_way(&self) -> Result<bool, ProjectionError> {
        crate::rebuild::under_way(&self.pool)
            .await
            .map_err(|error| ProjectionError::Store(format!("{error:#}")))
    }

    /// Whether to ask Redis: not for a while after it failed, so that the Postgres read
    /// models keep up without waiting for its timeouts (or its refusals) at every batch.
    fn redis_answers(&self) -> bool {
        let away = self.redis_away.lock().expect("not poisoned");
        away.is_none_or(|(since, wait)| since.elapsed() >= wait)
    }

    fn redis_away(&self, error: &str) {
        // The first reason stays: later batches only skip Redis for its sake.
        if self.redis_behind.reason().is_none() {
            self.redis_behind.set(Some(error.to_owned()));
        }
        let mut away = self.redis_away.lock().expect("not poisoned");
        let wait = match *away {
            Some((since, wait)) if since.elapsed() < wait => return,
            Some((_, wait)) => (wait * 2).min(REDIS_RETRY_AT_MOST),
            None => REDIS_RETRY_AFTER,
        };
        tracing::warn!(
            error,
            retry_in = ?wait,
            "Redis did not answer, or refused writes: applying events to Postgres only, Redis is rebuilt once it takes them"
        );
        *away = Some((Instant::now(), wait));
    }

    /// Redis took a batch, or was found whole: it is asked again at every batch.
    fn redis_back(&self) {
        *self.redis_away.lock().expect("not poisoned") = None;
        if self.redis_behind.reason().is_some() {
            tracing::info!("Redis has caught up with the Postgres read models");
            self.redis_behind.set(None);
        }
    }

    /// Rebuilds the Redis read models from Postgres if they are not whole, or no longer hold
    /// everything Postgres holds (per partition, the last offset applied: Redis restarted
    /// empty, or from an older snapshot, since). A batch another projector is applying may
    /// have reached Postgres and not Redis yet: Redis is looked at again a moment later before
    /// it is taken to be behind. Run at start and every so often by a quiet projector (a
    /// batch checks it as it comes). Returns whether it rebuilt them.
    pub async fn check_redis(&self) -> Result<bool, ProjectionError> {
        if !self.redis_answers() {
            return Ok(false);
        }
        // A rebuild elsewhere is not waited for (batches go on); nor is Redis taken to be
        // behind for the changes kept for after it: they are made first.
        if self.rebuild_under_way().await? || !self.make_deferred().await {
            return Ok(false);
        }
        let in_postgres: Vec<(String, i64)> = self
            .pool
            .get()
            .await?
            .query(
                "SELECT topic || '/' || partition, \"offset\" FROM applied_offsets",
                &[],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let redis_error = |error: redis::RedisError| ProjectionError::Store(error.to_string());
        let mut redis = self.redis.clone();
        let mut holds = infra::redis_store::holds(&mut redis, &self.keys, &in_postgres)
            .await
            .map_err(redis_error)?;
        if !holds {
            tokio::time::sleep(IN_FLIGHT).await;
            holds = infra::redis_store::holds_through(&mut redis, &self.keys, &in_postgres)
                .await
                .map_err(redis_error)?;
        }
        if holds {
            self.redis_back();
            return Ok(false);
        }
        tracing::warn!("the Redis read models are not whole, or behind Postgres: rebuilding them");
        if let Err(error) = self.rebuild_redis_unless_whole().await {
            // A Redis that refuses the rebuild's writes (full, say) is left alone a while.
            if error
                .downcast_ref::<redis::RedisError>()
                .is_some_and(plan::unreachable)
            {
                self.redis_away(&format!("{error:#}"));
            }
            return Err(ProjectionError::Store(format!("{error:#}")));
        }
        self.redis_back();
        Ok(true)
    }

    /// Rebuilds the Redis read models from Postgres unless they are whole.
    pub async fn restore_redis(&self) -> Result<(), ProjectionError> {
        self.rebuild_redis_unless_whole()
            .await
            .map_err(|error| ProjectionError::Store(format!("{error:#}")))
    }

    async fn rebuild_redis_unless_whole(&self) -> anyhow::Result<()> {
        crate::rebuild::restore_redis(&self.pool, &self.redis, &self.keys)
            .await
            .map(|_| ())
    }
}

/// The event's aggregate id, a number written as this build writes it. A row belongs to one
/// aggregate (see [`rows`]): "07" and "7" must not be two aggregates writing one row.
fn numeric_aggregate_id(event: &PublishedEvent) -> Result<i64, EnvelopeError> {
    event
        .aggregate_id
        .parse::<i64>()
        .ok()
        .filter(|id| id.to_string() == event.aggregate_id)
        .ok_or_else(|| EnvelopeError::BadAggregateId(event.event_id.clone()))
}

/// Refuses an event whose aggregate id is not `expected`, the one its payload names (a like's
/// row is its video and user's, written by their aggregate only: see [`rows`]).
fn aggregate_id_is(event: &PublishedEvent, expected: String) -> Result<(), EnvelopeError> {
    if event.aggregate_id == expected {
        Ok(())
    } else {
        Err(EnvelopeError::BadAggregateId(event.event_id.clone()))
    }
}

/// What `event` changes in the read models; None for aggregates no read model follows. Its
/// Redis changes name keys without a prefix: they are made in whichever generation is
/// current when they are (see `infra::redis_store::apply_all_once`).
pub fn plan_event(event: &PublishedEvent) -> Result<Option<Plan>, EnvelopeError> {
    let keys = &Keys::unprefixed();
    Ok(Some(match event.aggregate_type.as_str() {
        User::TYPE => users::plan(event, keys)?,
        Video::TYPE => videos::plan(event, keys)?,
        Like::TYPE => likes::plan(event, keys)?,
        Comment::TYPE => comments::plan(event, keys)?,
        Follow::TYPE => follows::plan(event, keys)?,
        Conversation::TYPE => conversations::plan(event)?,
        _ => return Ok(None),
    }))
}
