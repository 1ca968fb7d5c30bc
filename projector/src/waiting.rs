//! Events that came before an earlier event of their aggregate: kept in `waiting_events`,
//! holding their aggregate back, and applied in order as soon as the missing event is
//! (see the migration `waiting_events`). An aggregate's read models so never skip an event:
//! were event n+1 applied before n, n would later be taken for a repeat and dropped.
//!
//! A waiting event applied to Postgres stays in the table, marked released, until its Redis
//! change is made too: the event that released it may be delivered again after a crash
//! between the two stores, and its batch then carries the released ones to Redis as well.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Transaction;
use infra::envelope::PublishedEvent;

use crate::applied::Aggregate;
use crate::projections::{plan_event, Plan, ProjectionError};

/// A waiting event as read back from the table.
pub struct Stored {
    event: PublishedEvent,
    plan: Plan,
    /// Applied to Postgres already, perhaps not to Redis.
    released: bool,
}

/// Reads the waiting events of `aggregates` (nearly always there are none). Asked after their
/// applied sequences are locked, in a statement of its own: its snapshot then holds what the
/// transaction that held the lock before kept (a statement's snapshot is taken as it starts,
/// and the locking one may have started before that transaction committed).
pub async fn load<'a>(
    tx: &Transaction<'_>,
    aggregates: impl Iterator<Item = &'a Aggregate>,
) -> Result<Vec<Stored>, ProjectionError> {
    let (types, ids): (Vec<&str>, Vec<&str>) = aggregates
        .map(|(aggregate_type, aggregate_id)| (aggregate_type.as_str(), aggregate_id.as_str()))
        .unzip();
    if types.is_empty() {
        return Ok(vec![]);
    }
    let statement = tx
        .prepare_cached(
            "SELECT event, released_at IS NOT NULL FROM waiting_events
              WHERE (aggregate_type, aggregate_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
              ORDER BY aggregate_type, aggregate_id, sequence",
        )
        .await?;
    let rows = tx.query(&statement, &[&types, &ids]).await?;
    rows.iter()
        .map(|row| {
            let json: &str = row.get(0);
            // It was read and planned when it was kept: failing now means this build reads
            // less than the one that kept it. Not this batch's fault: retried, and logged.
            let unreadable = |error: &dyn std::fmt::Display| {
                ProjectionError::Store(format!("a waiting event can no longer be read: {error}"))
            };
            let event = PublishedEvent::from_json(json.as_bytes()).map_err(|e| unreadable(&e))?;
            let plan = plan_event(&event)
                .map_err(|e| unreadable(&e))?
                .ok_or_else(|| unreadable(&"no read model follows it"))?;
            Ok(Stored {
                event,
                plan,
                released: row.get(1),
            })
        })
        .collect()
}

/// An event and what it changes.
pub type Planned<'a> = (&'a PublishedEvent, &'a Plan);

struct Early<'a> {
    event: &'a PublishedEvent,
    plan: &'a Plan,
    /// In the table already (kept by an earlier batch).
    stored: bool,
}

/// The waiting events of a batch's aggregates, as the batch changes them.
pub struct Waiting<'a> {
    early: HashMap<Aggregate, BTreeMap<i64, Early<'a>>>,
    /// Released by earlier batches: their Redis changes are made again (at most once).
    released_before: Vec<Planned<'a>>,
    /// To insert into the table.
    kept: Vec<&'a PublishedEvent>,
    /// In the table and applied by this batch: to mark released.
    released: Vec<&'a PublishedEvent>,
    /// In the table, not released, and yet applied (kept by one batch while another applied
    /// it from memory): to remove.
    stale: Vec<&'a PublishedEvent>,
}

impl<'a> Waiting<'a> {
    /// The waiting events `stored`, against `last`: each aggregate's last applied sequence.
    pub fn new(stored: &'a [Stored], last: impl Fn(&PublishedEvent) -> i64) -> Self {
        let mut waiting = Self {
            early: HashMap::new(),
            released_before: vec![],
            kept: vec![],
            released: vec![],
            stale: vec![],
        };
        for stored in stored {
            if !stored.released && stored.event.sequence <= last(&stored.event) {
                waiting.stale.push(&stored.event);
            } else if stored.released {
                waiting.released_before.push((&stored.event, &stored.plan));
            } else {
                waiting.early_of(&stored.event).insert(
                    stored.event.sequence,
                    Early {
                        event: &stored.event,
                        plan: &stored.plan,
                        stored: true,
                    },
                );
            }
        }
        waiting
    }

    fn early_of(&mut self, event: &PublishedEvent) -> &mut BTreeMap<i64, Early<'a>> {
        self.early
            .entry((event.aggregate_type.clone(), event.aggregate_id.clone()))
            .or_default()
    }

    /// Keeps `event` until the event before it is applied.
    pub fn keep(&mut self, event: &'a PublishedEvent, plan: &'a Plan) {
        tracing::warn!(
            aggregate_type = event.aggregate_type,
            aggregate_id = event.aggregate_id,
            sequence = event.sequence,
            "an event came before an earlier one of its aggregate: it waits for it"
        );
        if let std::collections::btree_map::Entry::Vacant(entry) =
            self.early_of(event).entry(event.sequence)
        {
            entry.insert(Early {
                event,
                plan,
                stored: false,
            });
            self.kept.push(event);
        }
    }

    /// The aggregates with events waiting.
    pub fn aggregates(&self) -> Vec<Aggregate> {
        self.early
            .iter()
            .filter(|(_, early)| !early.is_empty())
            .map(|(aggregate, _)| aggregate.clone())
            .collect()
    }

    /// Takes the waiting event of `aggregate` that comes right after `last`, if it is here.
    pub fn take_next(&mut self, aggregate: &Aggregate, last: i64) -> Option<Planned<'a>> {
        let early = self.early.get_mut(aggregate)?.remove(&(last + 1))?;
        if early.stored {
            self.released.push(early.event);
        } else {
            // Kept by this batch and released by it: it never reaches the table.
            self.kept.retain(|kept| !std::ptr::eq(*kept, early.event));
        }
        Some((early.event, early.plan))
    }

    /// Events released by earlier batches, whose Redis changes may be missing.
    pub fn released_before(&self) -> &[Planned<'a>] {
        &self.released_before
    }

    /// Writes what the batch changed, in its transaction: the events it keeps, and the kept
    /// ones it applied.
    pub async fn store(&self, tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
        if !self.kept.is_empty() {
            let (keys, events): (Vec<_>, Vec<String>) = self
                .kept
                .iter()
                .map(|event| {
                    let json = String::from_utf8(event.to_json()).expect("JSON is UTF-8");
                    (key(event), json)
                })
                .unzip();
            let (types, ids, sequences) = columns(&keys);
            tx.execute(
                "INSERT INTO waiting_events (aggregate_type, aggregate_id, sequence, event)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
                 ON CONFLICT DO NOTHING",
                &[&types, &ids, &sequences, &events],
            )
            .await?;
        }
        if !self.stale.is_empty() {
            let keys: Vec<_> = self.stale.iter().map(|event| key(event)).collect();
            let (types, ids, sequences) = columns(&keys);
            tx.execute(
                "DELETE FROM waiting_events
                  WHERE released_at IS NULL
                    AND (aggregate_type, aggregate_id, sequence)
                     IN (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]))",
                &[&types, &ids, &sequences],
            )
            .await?;
        }
        if !self.released.is_empty() {
            let keys: Vec<_> = self.released.iter().map(|event| key(event)).collect();
            let (types, ids, sequences) = columns(&keys);
            tx.execute(
                "UPDATE waiting_events SET released_at = now()
                  WHERE (aggregate_type, aggregate_id, sequence)
                     IN (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]))",
                &[&types, &ids, &sequences],
            )
            .await?;
        }
        Ok(())
    }

    /// The released events to remove once their Redis changes are made.
    pub fn done(&self) -> Done {
        Done(
            self.released_before
                .iter()
                .map(|(event, _)| *event)
                .chain(self.released.iter().copied())
                .map(|event| {
                    let (aggregate_type, aggregate_id, sequence) = key(event);
                    (aggregate_type.to_owned(), aggregate_id.to_owned(), sequence)
                })
                .collect(),
        )
    }
}

type Key<'a> = (&'a str, &'a str, i64);

fn key(event: &PublishedEvent) -> Key<'_> {
    (&event.aggregate_type, &event.aggregate_id, event.sequence)
}

fn columns<'k>(keys: &[Key<'k>]) -> (Vec<&'k str>, Vec<&'k str>, Vec<i64>) {
    let mut columns = (vec![], vec![], vec![]);
    for (aggregate_type, aggregate_id, sequence) in keys {
        columns.0.push(*aggregate_type);
        columns.1.push(*aggregate_id);
        columns.2.push(*sequence);
    }
    columns
}

/// Released events, to leave the table once their Redis changes are made.
pub struct Done(Vec<(String, String, i64)>);

impl Done {
    pub async fn remove(&self, pool: &deadpool_postgres::Pool) -> Result<(), ProjectionError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let keys: Vec<Key<'_>> = self
            .0
            .iter()
            .map(|(aggregate_type, aggregate_id, sequence)| {
                (aggregate_type.as_str(), aggregate_id.as_str(), *sequence)
            })
            .collect();
        let (types, ids, sequences) = columns(&keys);
        pool.get()
            .await?
            .execute(
                "DELETE FROM waiting_events
                  WHERE released_at IS NOT NULL
                    AND (aggregate_type, aggregate_id, sequence)
                     IN (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]))",
                &[&types, &ids, &sequences],
            )
            .await?;
        Ok(())
    }
}

/// An aggregate held back by a gap, as operators see it (`projector waiting`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The last event applied: the one after it is missing.
    pub last_applied: i64,
    /// The events that came, waiting.
    pub waiting: Vec<i64>,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// Every aggregate held back by a gap, longest waiting first.
pub async fn gaps(pool: &deadpool_postgres::Pool) -> Result<Vec<Gap>, ProjectionError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT waiting.aggregate_type, waiting.aggregate_id,
                    coalesce(max(applied.sequence), 0),
                    array_agg(waiting.sequence ORDER BY waiting.sequence),
                    min(waiting.waiting_since)
               FROM waiting_events waiting
               LEFT JOIN applied_sequences applied USING (aggregate_type, aggregate_id)
              WHERE waiting.released_at IS NULL
              GROUP BY waiting.aggregate_type, waiting.aggregate_id
              ORDER BY min(waiting.waiting_since), 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Gap {
            aggregate_type: row.get(0),
            aggregate_id: row.get(1),
            last_applied: row.get(2),
            waiting: row.get(3),
            since: row.get(4),
        })
        .collect())
}
