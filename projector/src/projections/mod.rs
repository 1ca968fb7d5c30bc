//! Read models, one module per aggregate whose events they follow. Each module works out a
//! [`Plan`] for an event, without IO; the plan is then carried out against Postgres and Redis.

mod catching_up;
mod comments;
mod conversations;
mod follows;
mod likes;
mod plan;
pub(crate) mod rows;
mod told;
mod users;
mod videos;

use std::sync::Mutex;
use std::time::Duration;

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

pub use catching_up::RedisBehind;
use catching_up::{CatchingUp, RebuildBy};
use plan::InRedis;
pub use plan::{InPostgres, Item, Plan, Source, Unmade};
use told::{Carried, Told};

/// What making a batch's Redis part came to.
struct ToRedis {
    /// Items whose Redis change was made.
    applied: Vec<usize>,
    /// Whether Redis took the whole batch.
    made: bool,
}

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
    catching_up: CatchingUp,
    /// The rebuild of Redis this process runs in the background, if it started one.
    own_rebuild: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Longer than another projector's batches take between their Postgres commit and their
/// Redis changes (up to two batches: one being made in Redis, one applied to Postgres behind
/// it; see `consumer::EventLoop`). This process's own are waited for before a check.
const IN_FLIGHT: Duration = Duration::from_secs(2);

impl Projections {
    pub fn new(pool: deadpool_postgres::Pool, redis: ConnectionManager, keys: Keys) -> Self {
        Self {
            pool,
            redis,
            keys,
            catching_up: CatchingUp::default(),
            own_rebuild: Mutex::new(None),
        }
    }

    /// Whether Redis is behind, for the projector's readiness.
    pub fn redis_behind(&self) -> RedisBehind {
        self.catching_up.behind()
    }

    /// The aggregate types whose topics the projector reads.
    pub fn aggregate_types() -> &'static [&'static str] {
        &infra::read_after_write::PROJECTED
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
    /// all ([`Self::to_postgres`], then [`Self::to_redis`]).
    /// `span`: the messages the items came in (none for redriven events).
    pub async fn execute(
        &self,
        items: &[Item],
        span: &Span,
    ) -> Result<Vec<Outcome>, ProjectionError> {
        let in_postgres = self.to_postgres(items, span).await?;
        self.to_redis(&in_postgres).await
    }

    /// Applies a batch to Postgres (see [`plan::to_postgres`]); its Redis part is made by
    /// [`Self::to_redis`], which the consumer runs while the next batch is applied here.
    pub async fn to_postgres(
        &self,
        items: &[Item],
        span: &Span,
    ) -> Result<InPostgres, ProjectionError> {
        plan::to_postgres(items, span, &self.pool).await
    }

    /// Makes the Redis part of a batch applied to Postgres, then tells the command APIs
    /// where its aggregates stand ([`Told`]). Batches are to be given to it in the order
    /// they were applied to Postgres. May be run again after a failure.
    ///
    /// A batch never waits for a Redis rebuild, this process's or another's: its Redis part
    /// is kept, to be made once the rebuild is over. Only a redriven event (which comes from
    /// no partition: no offset record would show Redis missing it) is applied to both stores
    /// or left, a rebuild waited for.
    pub async fn to_redis(&self, batch: &InPostgres) -> Result<Vec<Outcome>, ProjectionError> {
        let in_redis = self.carry_to_redis(batch).await?;
        let mut outcomes = batch.outcomes.clone();
        for &i in &in_redis.applied {
            outcomes[i] = Outcome::Applied;
        }
        Told::of(&Carried {
            positions: &batch.positions,
            stopped: &batch.stopped,
            in_redis: in_redis.made,
        })
        .send(&self.pool)
        .await;
        Ok(outcomes)
    }

    /// [`Self::to_redis`] but for telling.
    async fn carry_to_redis(&self, batch: &InPostgres) -> Result<ToRedis, ProjectionError> {
        let from_broker = batch.from_broker();
        // Items whose change an attempt made count as applied even if a rebuild then took
        // in what was left of the batch.
        let mut applied = vec![];
        loop {
            // Batches from the broker wait behind those kept while Redis was rebuilt.
            let deferring = from_broker
                && (self.catching_up.rebuilding_here()
                    || !self
                        .catching_up
                        .make_deferred(&self.redis, &self.keys)
                        .await);
            let redis = (self.catching_up.answers() && !deferring).then_some(&self.redis);
            let now = batch.to_redis(redis, &self.keys, &self.pool).await?;
            applied.extend(now.applied);
            let done = |made| {
                Ok(ToRedis {
                    applied: applied.clone(),
                    made,
                })
            };
            match now.redis {
                InRedis::Made => {
                    self.catching_up.back();
                    return done(true);
                }
                InRedis::Unreachable(error) if !deferring => {
                    self.catching_up.away(&error);
                    if !from_broker {
                        return Err(ProjectionError::Store(error));
                    }
                    return done(false);
                }
                // Not whole, or behind changes kept for after a rebuild.
                _ => {}
            }
            if !from_broker {
                self.restore_redis().await?;
                continue;
            }
            if self.catching_up.rebuilding_here() {
                if self.catching_up.defer(batch.unmade(), RebuildBy::Us).await {
                    return done(false);
                }
                // It ended meanwhile: made now, after what it kept.
                continue;
            }
            if self.rebuild_under_way().await? {
                self.catching_up
                    .defer(batch.unmade(), RebuildBy::Another)
                    .await;
                return done(false);
            }
            // No rebuild under way: Redis lost the models, or the rebuild is over and they
            // are not whole. Made whole in the background, this batch's part after it.
            self.rebuild_in_background();
            if !self.catching_up.defer(batch.unmade(), RebuildBy::Us).await {
                continue;
            }
            return done(false);
        }
    }

    /// Whether another process holds the rebuild lock now.
    async fn rebuild_under_way(&self) -> Result<bool, ProjectionError> {
        crate::rebuild::under_way(&self.pool)
            .await
            .map_err(|error| ProjectionError::Store(format!("{error:#}")))
    }

    /// Rebuilds the Redis read models from Postgres if they are not whole, or no longer hold
    /// everything Postgres holds (per partition, the last offset applied: Redis restarted
    /// empty, or from an older snapshot, since). A batch another projector is applying may
    /// have reached Postgres and not Redis yet: Redis is looked at again a moment later before
    /// it is taken to be behind. Run every so often by a quiet projector (a batch checks it as
    /// it comes). Returns whether it started a rebuild, which runs in the background.
    pub async fn check_redis(&self) -> Result<bool, ProjectionError> {
        if !self.catching_up.answers() || self.catching_up.rebuilding_here() {
            return Ok(false);
        }
        // A rebuild elsewhere is not waited for (batches go on); nor is Redis taken to be
        // behind for the changes kept for after it: they are made first.
        if self.rebuild_under_way().await?
            || !self
                .catching_up
                .make_deferred(&self.redis, &self.keys)
                .await
        {
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
            self.catching_up.back();
            return Ok(false);
        }
        tracing::warn!("the Redis read models are not whole, or behind Postgres: rebuilding them");
        Ok(self.rebuild_in_background())
    }

    /// Starts rebuilding the Redis read models from Postgres in the background, unless they
    /// are whole; returns false if this process's rebuild already runs. Meanwhile batches are
    /// applied to Postgres and keep their Redis parts, made as it ends. Run at start (Redis
    /// may have lost its data while the projector was down) and whenever Redis is found not
    /// whole.
    pub fn rebuild_in_background(&self) -> bool {
        if !self.catching_up.start_rebuilding() {
            return false;
        }
        let (pool, redis, keys) = (self.pool.clone(), self.redis.clone(), self.keys.clone());
        let catching_up = self.catching_up.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = crate::rebuild::restore_redis(&pool, &redis, &keys).await {
                // Redis failing (full, say) or Postgres: Redis is left alone a while, and
                // rebuilt again after that.
                catching_up.away(&format!("could not rebuild Redis: {error:#}"));
            }
            catching_up.rebuilt(&redis, &keys).await;
        });
        *self.own_rebuild.lock().expect("not poisoned") = Some(task);
        true
    }

    /// Waits for this process's rebuild, if one runs, and for the changes kept for after it
    /// to be made.
    pub async fn settled(&self) {
        let task = self.own_rebuild.lock().expect("not poisoned").take();
        if let Some(task) = task {
            if let Err(error) = task.await {
                tracing::error!(%error, "the rebuild of Redis failed");
            }
        }
    }

    /// Rebuilds the Redis read models from Postgres unless they are whole, and waits for it.
    pub async fn restore_redis(&self) -> Result<(), ProjectionError> {
        crate::rebuild::restore_redis(&self.pool, &self.redis, &self.keys)
            .await
            .map(|_| ())
            .map_err(|error| ProjectionError::Store(format!("{error:#}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The list a write's wait is decided by (`infra::read_after_write::PROJECTED`) is the
    /// list of aggregate types the projector plans events of: a type planned and not listed
    /// would answer its writes before they are readable; one listed and not planned would
    /// make them wait for ever.
    #[test]
    fn the_projected_list_is_what_the_projector_plans() {
        for &aggregate_type in domain::published::AGGREGATE_TYPES {
            let event = infra::testing::published_event(
                aggregate_type,
                "1",
                1,
                "SomethingHappened",
                chrono::Utc::now(),
                serde_json::json!({}),
            );
            let planned = !matches!(plan_event(&event), Ok(None));
            assert_eq!(
                planned,
                infra::read_after_write::projected(aggregate_type),
                "{aggregate_type}"
            );
        }
    }
}
