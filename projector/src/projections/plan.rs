//! What applying one event changes, worked out without IO, then carried out: SQL statements
//! in one read-store transaction that also records the event as applied, and a Redis
//! [`Change`] applied at most once by its own record.

use infra::redis_store::{ApplyOnce, Change, Keys};
use redis::aio::ConnectionManager;
use tokio_postgres::types::ToSql;

use super::{Outcome, ProjectionError};
use crate::applied::mark_applied;
use infra::envelope::PublishedEvent;

pub type Param = Box<dyn ToSql + Sync + Send>;

#[derive(Default)]
pub struct Plan {
    statements: Vec<(&'static str, Vec<Param>)>,
    redis: Change,
}

impl Plan {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn sql(mut self, statement: &'static str, params: Vec<Param>) -> Self {
        self.statements.push((statement, params));
        self
    }

    pub fn redis(mut self, change: impl FnOnce(Change) -> Change) -> Self {
        self.redis = change(self.redis);
        self
    }

    /// Carries the plan out. Both stores keep their own record of applied events, so after a
    /// crash between the two, the redelivered event completes what is missing and nothing
    /// else, and so does carrying the plan out again after [`ProjectionError::RedisNotReady`].
    pub async fn execute(
        &self,
        event: &PublishedEvent,
        pool: &deadpool_postgres::Pool,
        redis: &ConnectionManager,
        keys: &Keys,
    ) -> Result<Outcome, ProjectionError> {
        let mut applied = {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            if mark_applied(&tx, event).await? {
                for (statement, params) in &self.statements {
                    let params: Vec<&(dyn ToSql + Sync)> = params
                        .iter()
                        .map(|param| param.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    tx.execute(*statement, &params).await?;
                }
                tx.commit().await?;
                true
            } else {
                false
            }
        };
        if !self.redis.is_empty() {
            let aggregate = format!("{}/{}", event.aggregate_type, event.aggregate_id);
            match self
                .redis
                .apply_once(&mut redis.clone(), keys, &aggregate, event.sequence)
                .await
                .map_err(|error| ProjectionError::Store(error.to_string()))?
            {
                ApplyOnce::Applied => applied = true,
                ApplyOnce::AppliedBefore => {}
                ApplyOnce::NotReady => {
                    return Err(ProjectionError::RedisNotReady {
                        applied_in_postgres: applied,
                    })
                }
            }
        }
        Ok(if applied {
            Outcome::Applied
        } else {
            Outcome::AlreadyApplied
        })
    }
}

/// Boxes a statement parameter.
pub fn p<T: ToSql + Sync + Send + 'static>(value: T) -> Param {
    Box::new(value)
}
