//! What applying one event changes, worked out without IO, then carried out: SQL statements
//! in one read-store transaction that also records the event as applied, and a Redis
//! [`Change`] applied at most once by its own record.

use infra::redis_store::{apply_all_once, ApplyOnce, Change, Keys};
use redis::aio::ConnectionManager;
use tokio_postgres::types::ToSql;

use super::ProjectionError;
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
}

/// What carrying out plans did.
pub struct Executed {
    /// Per plan: whether it changed a read store (false: its event was applied before).
    pub applied: Vec<bool>,
    /// False when the Redis read models were not whole: no Redis change was made, and the
    /// plans are to be carried out again once Redis is rebuilt.
    pub redis_ready: bool,
}

/// Carries out the plans of several events, in order: their SQL in one read-store transaction
/// that also records each event as applied (one commit for them all), then their Redis
/// changes in one round trip. Both stores keep their own record of applied events, so after a
/// crash between the two, the redelivered events complete what is missing and nothing else;
/// and so does carrying the plans out again.
pub async fn execute_all(
    planned: &[(&PublishedEvent, &Plan)],
    pool: &deadpool_postgres::Pool,
    redis: &ConnectionManager,
    keys: &Keys,
) -> Result<Executed, ProjectionError> {
    let mut applied = vec![false; planned.len()];
    {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        for ((event, plan), applied) in planned.iter().zip(&mut applied) {
            if mark_applied(&tx, event).await? {
                for (statement, params) in &plan.statements {
                    let params: Vec<&(dyn ToSql + Sync)> = params
                        .iter()
                        .map(|param| param.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    tx.execute(*statement, &params).await?;
                }
                *applied = true;
            }
        }
        tx.commit().await?;
    }

    let aggregates: Vec<String> = planned
        .iter()
        .map(|(event, _)| format!("{}/{}", event.aggregate_type, event.aggregate_id))
        .collect();
    let mut changed = vec![];
    let mut changes = vec![];
    for (i, (event, plan)) in planned.iter().enumerate() {
        if !plan.redis.is_empty() {
            changed.push(i);
            changes.push((aggregates[i].as_str(), event.sequence, &plan.redis));
        }
    }
    let mut redis_ready = true;
    if !changes.is_empty() {
        let outcomes = apply_all_once(&mut redis.clone(), keys, &changes)
            .await
            .map_err(|error| ProjectionError::Store(error.to_string()))?;
        for (i, outcome) in changed.into_iter().zip(outcomes) {
            match outcome {
                ApplyOnce::Applied => applied[i] = true,
                ApplyOnce::AppliedBefore => {}
                ApplyOnce::NotReady => redis_ready = false,
            }
        }
    }
    Ok(Executed {
        applied,
        redis_ready,
    })
}

/// Boxes a statement parameter.
pub fn p<T: ToSql + Sync + Send + 'static>(value: T) -> Param {
    Box::new(value)
}
