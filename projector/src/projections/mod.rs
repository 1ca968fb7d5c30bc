//! Read models, one module per aggregate whose events they follow. Each module works out a
//! [`Plan`] for an event, without IO; the plan is then carried out against Postgres and Redis.

mod comments;
mod conversations;
mod follows;
mod likes;
mod plan;
mod users;
mod videos;

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

use plan::execute_all;
pub use plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Delivered before: nothing changed.
    AlreadyApplied,
    /// An aggregate type no read model follows.
    Ignored,
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
    keys: Keys,
}

impl Projections {
    pub fn new(pool: deadpool_postgres::Pool, redis: ConnectionManager, keys: Keys) -> Self {
        Self { pool, redis, keys }
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
        let keys = &self.keys;
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

    /// Applies `event` to every read model, first rebuilding the Redis ones from Postgres if
    /// they are not whole (Redis lost its data, or an operator rebuilt them meanwhile).
    pub async fn apply(&self, event: &PublishedEvent) -> Result<Outcome, ProjectionError> {
        let Some(plan) = self.plan(event)? else {
            return Ok(Outcome::Ignored);
        };
        Ok(self.execute(&[(event, &plan)]).await?[0])
    }

    /// Carries out the plans of several events, in order, as one batch: one read-store commit
    /// and one Redis round trip for them all.
    pub async fn execute(
        &self,
        planned: &[(&PublishedEvent, &Plan)],
    ) -> Result<Vec<Outcome>, ProjectionError> {
        // A rebuild takes in what an attempt applied to Postgres, so the next attempt finds
        // it applied everywhere: it was applied all the same.
        let mut applied = vec![false; planned.len()];
        loop {
            let executed = execute_all(planned, &self.pool, &self.redis, &self.keys).await?;
            for (applied, now) in applied.iter_mut().zip(executed.applied) {
                *applied |= now;
            }
            if executed.redis_ready {
                break;
            }
            self.restore_redis().await?;
        }
        Ok(applied
            .into_iter()
            .map(|applied| {
                if applied {
                    Outcome::Applied
                } else {
                    Outcome::AlreadyApplied
                }
            })
            .collect())
    }

    /// Rebuilds the Redis read models from Postgres unless they are whole.
    pub async fn restore_redis(&self) -> Result<(), ProjectionError> {
        crate::rebuild::restore_redis(&self.pool, &self.redis, &self.keys)
            .await
            .map(|_| ())
            .map_err(|error| ProjectionError::Store(format!("{error:#}")))
    }
}
