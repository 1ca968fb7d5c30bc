//! What applying one event changes, worked out without IO, then carried out: rows written
//! in one read-store transaction that also records the event as applied, and a Redis
//! [`Change`] applied at most once by its own record.

use infra::read_after_write::{Notice, Reached};
use infra::redis_store::{apply_all_once, ApplyOnce, Change, Keys, PartitionSpan};
use redis::aio::ConnectionManager;

use super::rows::{self, Row, Value};
use super::{Outcome, ProjectionError};
use crate::applied::{Aggregate, AppliedSequences, Order};
use crate::dead_letters::{self, HeldBack, Received};
use crate::span::Span;
use crate::waiting::{self, Waiting};
use infra::envelope::PublishedEvent;

#[derive(Default)]
pub struct Plan {
    rows: Vec<Row>,
    /// None for an event no Redis read model follows (a chat message); else its change,
    /// perhaps none, which still counts as the aggregate's next event there.
    redis: Option<Change>,
}

impl Plan {
    pub fn new() -> Self {
        Self::default()
    }

    /// A row to write with `statement`, which takes rows as columns (see [`rows`]) and
    /// touches only rows of the event's own aggregate.
    pub fn row(mut self, statement: &'static str, values: Vec<Value>) -> Self {
        self.rows.push(Row { statement, values });
        self
    }

    pub fn redis(mut self, change: impl FnOnce(Change) -> Change) -> Self {
        self.redis = Some(change(self.redis.take().unwrap_or_default()));
        self
    }

    /// Its rows to write, in order, with the aggregate of `event` (its event).
    pub fn writes<'a>(
        &'a self,
        event: &'a PublishedEvent,
    ) -> impl Iterator<Item = rows::Write<'a>> {
        let aggregate = (event.aggregate_type.as_str(), event.aggregate_id.as_str());
        self.rows.iter().map(move |row| (aggregate, row))
    }

    /// Its Redis change, with keys unprefixed; None when no Redis read model follows it.
    /// Every event of an aggregate that has one reaches Redis, each after the one before:
    /// Redis applies only an aggregate's next event (see `infra::redis_store`).
    pub fn redis_change(&self) -> Option<&Change> {
        self.redis.as_ref()
    }
}

/// One message of a batch, as read (without IO).
pub enum Item {
    /// An event to apply, and what it changes.
    Event {
        event: PublishedEvent,
        plan: Plan,
        source: Source,
    },
    /// A message no read model follows.
    Ignored,
    /// A message that cannot be read: dead-lettered, with its aggregate held back after it.
    Unreadable { received: Received, reason: String },
}

/// Where an event to apply comes from.
pub enum Source {
    /// The broker: held back behind a dead letter of its aggregate.
    Broker(Received),
    /// A dead letter an operator redrives: it is what the hold is waiting for.
    Redrive,
}

/// A batch applied to Postgres, its Redis part still to make ([`InPostgres::to_redis`]).
/// The consumer makes it while the next batch is applied to Postgres.
pub struct InPostgres {
    /// Per item. An event found applied in Postgres is `AlreadyApplied` here, and becomes
    /// `Applied` if its Redis change is made now.
    pub outcomes: Vec<Outcome>,
    /// Where the batch's aggregates stand in Postgres after it: each one's last applied
    /// sequence (what requests waiting for them learn: [`infra::read_after_write`]).
    pub positions: Vec<(Aggregate, i64)>,
    /// The events it dead-lettered or held back.
    pub stopped: Vec<Notice>,
    /// Its Redis part, in the order it is made.
    redis: Unmade,
    /// Per change of `redis`, the batch item it is (none for waiting events it applied).
    items: Vec<Option<usize>>,
    /// Released waiting events, to remove once their Redis changes are made.
    done: waiting::Done,
}

/// What making a batch's Redis part did.
pub struct InRedisNow {
    /// Items whose Redis change was made now: `Applied`, whatever Postgres said.
    pub applied: Vec<usize>,
    pub redis: InRedis,
}

/// A batch's Redis part, owned: the messages it came in and the changes of its events, in
/// the order they are made (see `infra::redis_store::apply_all_once`).
#[derive(Debug, Clone)]
pub struct Unmade {
    pub span: Vec<PartitionSpan>,
    pub changes: Vec<(String, i64, Change)>,
}

impl Unmade {
    /// How many events' changes it holds.
    pub fn events(&self) -> usize {
        self.changes.len()
    }

    /// Makes it in Redis; whether the models were whole (else nothing is made).
    pub async fn make(
        &self,
        redis: &ConnectionManager,
        keys: &Keys,
    ) -> Result<bool, redis::RedisError> {
        Ok(self.apply(redis, keys).await?.whole)
    }

    async fn apply(
        &self,
        redis: &ConnectionManager,
        keys: &Keys,
    ) -> Result<infra::redis_store::AppliedOnce, redis::RedisError> {
        let changes: Vec<(&str, i64, &Change)> = self
            .changes
            .iter()
            .map(|(aggregate, sequence, change)| (aggregate.as_str(), *sequence, change))
            .collect();
        apply_all_once(&mut redis.clone(), keys, &self.span, &changes).await
    }
}

/// What became of a batch's Redis changes.
#[derive(Debug)]
pub enum InRedis {
    Made,
    /// The Redis read models were not whole, or found not to be (Redis lost data): the batch
    /// is to be carried out again once they are rebuilt.
    NotWhole,
    /// Redis did not answer, or was not asked (it had not answered a moment before). The
    /// Postgres read models are up to date all the same; Redis's record of offsets stays
    /// behind, so it is rebuilt once it answers again.
    Unreachable(String),
}

/// One event's Redis change, in the order the batch makes them.
struct RedisChange<'a> {
    aggregate: String,
    sequence: i64,
    change: &'a Change,
    /// The batch item it is, if any (not for waiting events applied by the batch).
    item: Option<usize>,
}

/// Applies a batch to Postgres, in order, in one read-store transaction: the dead letters,
/// and the SQL of each event with the record that it is applied (one commit for them all).
/// Its Redis part is made after ([`InPostgres::to_redis`]). Both stores keep their own record
/// of applied events, so after a crash between the two, the redelivered events complete what
/// is missing and nothing else; and so does carrying the batch out again.
///
/// An aggregate's events are applied in sequence order only: one that comes before its
/// predecessor waits (see [`crate::waiting`]) and is applied right after it.
///
/// It takes a constant number of round trips whatever the batch's size: the batch's
/// aggregates are locked and their applied sequences read in one statement, which events to
/// apply is decided in memory, and their rows are written with one statement per kind of
/// write (see [`rows`]), the new applied sequences last.
pub async fn to_postgres(
    items: &[Item],
    span: &Span,
    pool: &deadpool_postgres::Pool,
) -> Result<InPostgres, ProjectionError> {
    let mut outcomes = vec![Outcome::Ignored; items.len()];
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Before any table is touched, in one round trip: a replay switching generations waits
    // for this batch, or this batch for the switch (and then applies to the new generation);
    // and a redrive's listing of dead letters waits for this batch's, or this batch for it.
    let locks = tx
        .prepare_cached("SELECT pg_advisory_xact_lock_shared($1), pg_advisory_xact_lock_shared($2)")
        .await?;
    tx.execute(
        &locks,
        &[
            &infra::read_store::GENERATION_SWITCH_LOCK,
            &dead_letters::LOCK,
        ],
    )
    .await?;
    let received: Vec<&Received> = items
        .iter()
        .filter_map(|item| match item {
            Item::Event {
                source: Source::Broker(received),
                ..
            }
            | Item::Unreadable { received, .. } => Some(received),
            Item::Event {
                source: Source::Redrive,
                ..
            }
            | Item::Ignored => None,
        })
        .collect();
    let mut held_back = if received.is_empty() {
        HeldBack::default()
    } else {
        dead_letters::held_back(&tx, &received).await?
    };
    // First what is dead-lettered (rare) and which events are left to apply.
    let mut to_apply = vec![];
    let mut stopped = vec![];
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Event {
                event,
                plan,
                source,
            } => {
                if let Source::Broker(received) = source {
                    if held_back.holds(received) {
                        dead_letters::insert(&tx, received, dead_letters::HELD_BACK).await?;
                        outcomes[i] = Outcome::HeldBack;
                        stopped.push(Notice {
                            reached: Reached::HeldBack,
                            sequence: event.sequence,
                            aggregate_type: event.aggregate_type.clone(),
                            aggregate_id: event.aggregate_id.clone(),
                        });
                        continue;
                    }
                }
                to_apply.push((i, event, plan));
            }
            Item::Unreadable { received, reason } => {
                // Its own reason even when held back: it is what a redrive will meet.
                dead_letters::insert(&tx, received, reason).await?;
                held_back.start_at(received);
                outcomes[i] = Outcome::DeadLettered;
                stopped.extend(dead_lettered(received));
            }
            Item::Ignored => {}
        }
    }

    // Sent together: the client pipelines them, and Postgres runs the second (and takes its
    // snapshot) once the first holds its locks.
    let batch_aggregates: Vec<Aggregate> = to_apply
        .iter()
        .map(|(_, event, _)| (event.aggregate_type.clone(), event.aggregate_id.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (mut applied, stored) = futures::try_join!(
        async { Ok::<_, ProjectionError>(AppliedSequences::lock(&tx, &batch_aggregates).await?) },
        waiting::load(&tx, batch_aggregates.iter()),
    )?;
    let mut waiting = Waiting::new(&stored, |event| {
        applied.last(&(event.aggregate_type.clone(), event.aggregate_id.clone()))
    });
    let mut writes: Vec<rows::Write<'_>> = vec![];
    let mut redis_changes: Vec<RedisChange<'_>> = waiting
        .released_before()
        .iter()
        .filter_map(|(event, plan)| RedisChange::of(event, plan, None))
        .collect();
    // What waits for an event already applied (by a batch that raced the one keeping it).
    for aggregate in waiting.aggregates() {
        while let Some((event, plan)) = waiting.take_next(&aggregate, applied.last(&aggregate)) {
            applied.advance(event);
            writes.extend(plan.writes(event));
            redis_changes.extend(RedisChange::of(event, plan, None));
        }
    }
    for (i, event, plan) in to_apply {
        match applied.order(event) {
            Order::Repeat => outcomes[i] = Outcome::AlreadyApplied,
            Order::Early => {
                waiting.keep(event, plan);
                outcomes[i] = Outcome::Waiting;
                continue;
            }
            Order::Next => {
                applied.advance(event);
                writes.extend(plan.writes(event));
                outcomes[i] = Outcome::Applied;
                // And what was waiting for it.
                let aggregate = (event.aggregate_type.clone(), event.aggregate_id.clone());
                while let Some((event, plan)) =
                    waiting.take_next(&aggregate, applied.last(&aggregate))
                {
                    applied.advance(event);
                    writes.extend(plan.writes(event));
                    redis_changes.extend(RedisChange::of(event, plan, None));
                }
            }
        }
        // Applied now, or before (its Redis change may be what a crash left out).
        redis_changes.extend(RedisChange::of(event, plan, Some(i)));
    }
    futures::try_join!(rows::write(&tx, writes), span.record(&tx))?;
    let positions: Vec<(Aggregate, i64)> = batch_aggregates
        .into_iter()
        .map(|aggregate| {
            let last = applied.last(&aggregate);
            (aggregate, last)
        })
        .collect();
    applied.store(&tx).await?;
    waiting.store(&tx).await?;
    let done = waiting.done();
    tx.commit().await?;
    drop(client);

    // An aggregate's changes in sequence order: Redis applies only an aggregate's next
    // event, and takes a later one for a gap. (A batch delivered again holds an event and
    // the waiting ones it released in the order they came, not applied.)
    redis_changes.sort_by(|a, b| (&a.aggregate, a.sequence).cmp(&(&b.aggregate, b.sequence)));
    let (changes, items) = redis_changes
        .into_iter()
        .map(|change| {
            let RedisChange {
                aggregate,
                sequence,
                change,
                item,
            } = change;
            ((aggregate, sequence, change.clone()), item)
        })
        .unzip();
    Ok(InPostgres {
        outcomes,
        positions,
        stopped,
        redis: Unmade {
            span: span.in_redis(),
            changes,
        },
        items,
        done,
    })
}

impl InPostgres {
    /// Whether it came from the broker (not from an operator's redrive).
    pub fn from_broker(&self) -> bool {
        !self.redis.span.is_empty()
    }

    /// Its Redis part, to keep for later.
    pub fn unmade(&self) -> Unmade {
        self.redis.clone()
    }

    /// Makes its Redis part in one round trip (`redis` None: Redis is not to be asked now),
    /// then removes the waiting events it released. May be run again: Redis makes each
    /// change at most once.
    pub async fn to_redis(
        &self,
        redis: Option<&ConnectionManager>,
        keys: &Keys,
        pool: &deadpool_postgres::Pool,
    ) -> Result<InRedisNow, ProjectionError> {
        let not_made = |redis| InRedisNow {
            applied: vec![],
            redis,
        };
        let Some(redis) = redis else {
            let skipped = "Redis was not asked (it failed a moment ago, or is being rebuilt)";
            return Ok(not_made(InRedis::Unreachable(skipped.to_owned())));
        };
        let made = match self.redis.apply(redis, keys).await {
            Ok(made) => made,
            Err(error) if unreachable(&error) => {
                return Ok(not_made(InRedis::Unreachable(error.to_string())))
            }
            Err(error) => return Err(ProjectionError::Store(error.to_string())),
        };
        let applied = self
            .items
            .iter()
            .zip(made.outcomes)
            .filter_map(|(item, made)| match (made, item) {
                (ApplyOnce::Applied, Some(i)) => Some(*i),
                _ => None,
            })
            .collect();
        if !made.whole {
            return Ok(InRedisNow {
                applied,
                redis: InRedis::NotWhole,
            });
        }
        self.done.remove(pool).await?;
        Ok(InRedisNow {
            applied,
            redis: InRedis::Made,
        })
    }
}

/// The event of a dead-lettered message, as far as it can be read: a message that is not
/// even JSON names no event, and requests waiting for it wait to their bound.
fn dead_lettered(received: &Received) -> Option<Notice> {
    let event: serde_json::Value = serde_json::from_slice(received.payload.as_deref()?).ok()?;
    Some(Notice {
        reached: Reached::DeadLettered,
        sequence: event.get("sequence")?.as_i64()?,
        aggregate_type: event.get("aggregate_type")?.as_str()?.to_owned(),
        aggregate_id: event.get("aggregate_id")?.as_str()?.to_owned(),
    })
}

/// Whether Redis failed to answer, or answered that it cannot serve now (refusing writes,
/// loading its data: see [`infra::redis_store::is_unwell`]), rather than refused a command.
pub(super) fn unreachable(error: &redis::RedisError) -> bool {
    infra::redis_store::is_unwell(error)
}

impl<'a> RedisChange<'a> {
    /// The Redis change of `event`; None when no Redis read model follows it.
    fn of(event: &PublishedEvent, plan: &'a Plan, item: Option<usize>) -> Option<Self> {
        Some(Self {
            aggregate: format!("{}/{}", event.aggregate_type, event.aggregate_id),
            sequence: event.sequence,
            change: plan.redis.as_ref()?,
            item,
        })
    }
}
