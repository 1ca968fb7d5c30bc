//! What applying one event changes, worked out without IO, then carried out: SQL statements
//! in one read-store transaction that also records the event as applied, and a Redis
//! [`Change`] applied at most once by its own record.

use infra::redis_store::{apply_all_once, ApplyOnce, Change, Keys};
use redis::aio::ConnectionManager;
use tokio_postgres::types::ToSql;

use super::{Outcome, ProjectionError};
use crate::applied::{execute_pipelined, AppliedSequences};
use crate::dead_letters::{self, HeldBack, Received};
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

/// One message of a batch, as read (without IO).
pub enum Item<'a> {
    /// An event to apply. Messages from the broker (`received`) are held back behind a dead
    /// letter of their aggregate; events an operator redrives (no `received`) are not.
    Event {
        event: &'a PublishedEvent,
        plan: &'a Plan,
        received: Option<&'a Received>,
    },
    /// A message no read model follows.
    Ignored,
    /// A message that cannot be read: dead-lettered, with its aggregate held back after it.
    Unreadable {
        received: &'a Received,
        reason: &'a str,
    },
}

/// What carrying out a batch did.
pub struct Executed {
    /// Per item. An event applied in one store and found applied in the other is `Applied`.
    pub outcomes: Vec<Outcome>,
    /// False when the Redis read models were not whole: no Redis change was made, and the
    /// batch is to be carried out again once Redis is rebuilt.
    pub redis_ready: bool,
}

/// Carries out a batch, in order: in one read-store transaction, the dead letters, and the
/// SQL of each event with the record that it is applied (one commit for them all); then the
/// events' Redis changes in one round trip. Both stores keep their own record of applied
/// events, so after a crash between the two, the redelivered events complete what is missing
/// and nothing else; and so does carrying the batch out again.
///
/// The Postgres side takes a constant number of round trips whatever the batch's size: the
/// batch's aggregates are locked and their applied sequences read in one statement, which
/// events to apply is decided in memory, and their statements are sent pipelined, with the
/// new applied sequences last.
pub async fn execute_all(
    items: &[Item<'_>],
    pool: &deadpool_postgres::Pool,
    redis: &ConnectionManager,
    keys: &Keys,
) -> Result<Executed, ProjectionError> {
    let mut outcomes = vec![Outcome::Ignored; items.len()];
    // Indices of the events applied (or found applied) in Postgres: their Redis changes next.
    let mut events = vec![];
    {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let received: Vec<&Received> = items
            .iter()
            .filter_map(|item| match item {
                Item::Event { received, .. } => *received,
                Item::Unreadable { received, .. } => Some(*received),
                Item::Ignored => None,
            })
            .collect();
        let mut held_back = if received.is_empty() {
            HeldBack::default()
        } else {
            dead_letters::held_back(&tx, &received).await?
        };
        // First what is dead-lettered (rare) and which events are left to apply.
        let mut to_apply = vec![];
        for (i, item) in items.iter().enumerate() {
            match item {
                Item::Event {
                    event,
                    plan,
                    received,
                } => {
                    if let Some(received) = received {
                        if held_back.holds(received) {
                            dead_letters::insert(&tx, received, dead_letters::HELD_BACK).await?;
                            outcomes[i] = Outcome::HeldBack;
                            continue;
                        }
                    }
                    to_apply.push((i, *event, *plan));
                }
                Item::Unreadable { received, reason } => {
                    // Its own reason even when held back: it is what a redrive will meet.
                    dead_letters::insert(&tx, received, reason).await?;
                    held_back.start_at(received);
                    outcomes[i] = Outcome::DeadLettered;
                }
                Item::Ignored => {}
            }
        }
        let mut applied =
            AppliedSequences::lock(&tx, to_apply.iter().map(|(_, event, _)| *event)).await?;
        let mut statements = vec![];
        for (i, event, plan) in to_apply {
            outcomes[i] = Outcome::AlreadyApplied;
            if applied.advance(event) {
                statements.extend(plan.statements.iter());
                outcomes[i] = Outcome::Applied;
            }
            events.push(i);
        }
        execute_pipelined(&tx, &statements).await?;
        applied.store(&tx).await?;
        tx.commit().await?;
    }

    let mut changes = vec![];
    let mut changed = vec![];
    for i in events {
        if let Item::Event { event, plan, .. } = &items[i] {
            if !plan.redis.is_empty() {
                let aggregate = format!("{}/{}", event.aggregate_type, event.aggregate_id);
                changes.push((aggregate, event.sequence, &plan.redis));
                changed.push(i);
            }
        }
    }
    let mut redis_ready = true;
    if !changes.is_empty() {
        let changes: Vec<_> = changes
            .iter()
            .map(|(aggregate, sequence, change)| (aggregate.as_str(), *sequence, *change))
            .collect();
        let applied = apply_all_once(&mut redis.clone(), keys, &changes)
            .await
            .map_err(|error| ProjectionError::Store(error.to_string()))?;
        for (i, applied) in changed.into_iter().zip(applied) {
            match applied {
                ApplyOnce::Applied => outcomes[i] = Outcome::Applied,
                ApplyOnce::AppliedBefore => {}
                ApplyOnce::NotReady => redis_ready = false,
            }
        }
    }
    Ok(Executed {
        outcomes,
        redis_ready,
    })
}

/// Boxes a statement parameter.
pub fn p<T: ToSql + Sync + Send + 'static>(value: T) -> Param {
    Box::new(value)
}
