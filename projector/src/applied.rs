//! In-order, at-most-once application of events to the Postgres read models, a batch at a
//! time.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use infra::envelope::PublishedEvent;

pub type Aggregate = (String, String);

/// Where an event stands in its aggregate's history, against what was applied before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// It, or a later event of its aggregate, was applied before: Kafka delivered it again.
    Repeat,
    /// The event right after the last applied one: to apply now.
    Next,
    /// An earlier event of its aggregate has not been applied: it waits for it.
    Early,
}

/// The last applied event of each aggregate of a batch, read under a row lock held to the end
/// of the transaction that applies the batch: two projectors handed the same partition during
/// a rebalance cannot both apply an event. Which events to apply is then decided in memory.
pub struct AppliedSequences {
    /// Per aggregate: its last applied sequence, and whether this batch moved it.
    last: HashMap<Aggregate, (i64, bool)>,
}

impl AppliedSequences {
    /// Locks the record of every aggregate of `aggregates` (sorted, without repeats; making a
    /// record at 0 for an aggregate never seen) and reads it, in one statement. Records are
    /// locked in key order, so two transactions locking overlapping sets do not deadlock.
    pub async fn lock(
        tx: &Transaction<'_>,
        aggregates: &[Aggregate],
    ) -> Result<Self, tokio_postgres::Error> {
        debug_assert!(aggregates.is_sorted(), "locked in key order");
        let mut last = HashMap::with_capacity(aggregates.len());
        if aggregates.is_empty() {
            return Ok(Self { last });
        }
        let (types, ids): (Vec<&str>, Vec<&str>) = aggregates
            .iter()
            .map(|(aggregate_type, aggregate_id)| (aggregate_type.as_str(), aggregate_id.as_str()))
            .unzip();
        // The no-op update of an existing record is what locks it, and returns it as the
        // latest committed transaction left it.
        let statement = tx
            .prepare_cached(
                "INSERT INTO applied_sequences AS applied (aggregate_type, aggregate_id, sequence)
                 SELECT aggregate_type, aggregate_id, 0
                   FROM unnest($1::text[], $2::text[]) AS batch (aggregate_type, aggregate_id)
                  ORDER BY aggregate_type, aggregate_id
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                    SET sequence = applied.sequence
                 RETURNING aggregate_type, aggregate_id, sequence",
            )
            .await?;
        let rows = tx.query(&statement, &[&types, &ids]).await?;
        for row in rows {
            last.insert((row.get(0), row.get(1)), (row.get(2), false));
        }
        Ok(Self { last })
    }

    /// The aggregates locked.
    pub fn aggregates(&self) -> impl Iterator<Item = &Aggregate> {
        self.last.keys()
    }

    /// Where `event` stands against what its aggregate has applied.
    pub fn order(&self, event: &PublishedEvent) -> Order {
        let last = self
            .last
            .get(&(event.aggregate_type.clone(), event.aggregate_id.clone()))
            .map_or(0, |(last, _)| *last);
        if event.sequence <= last {
            Order::Repeat
        } else if event.sequence == last + 1 {
            Order::Next
        } else {
            Order::Early
        }
    }

    /// Counts `event` applied: its aggregate's last applied sequence moves to it.
    pub fn advance(&mut self, event: &PublishedEvent) {
        let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let (last, advanced) = self.last.entry(key).or_insert((0, false));
        debug_assert_eq!(*last + 1, event.sequence, "events are applied in order");
        *last = event.sequence;
        *advanced = true;
    }

    /// The last applied sequence of `aggregate`.
    pub fn last(&self, aggregate: &Aggregate) -> i64 {
        self.last.get(aggregate).map_or(0, |(last, _)| *last)
    }

    /// Records the sequences advanced, in the batch's transaction.
    pub async fn store(self, tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
        let mut types = vec![];
        let mut ids = vec![];
        let mut sequences = vec![];
        for ((aggregate_type, aggregate_id), (sequence, advanced)) in self.last {
            if advanced {
                types.push(aggregate_type);
                ids.push(aggregate_id);
                sequences.push(sequence);
            }
        }
        if types.is_empty() {
            return Ok(());
        }
        let statement = tx
            .prepare_cached(
                "UPDATE applied_sequences applied SET sequence = batch.sequence
                   FROM unnest($1::text[], $2::text[], $3::bigint[])
                        AS batch (aggregate_type, aggregate_id, sequence)
                  WHERE applied.aggregate_type = batch.aggregate_type
                    AND applied.aggregate_id = batch.aggregate_id",
            )
            .await?;
        tx.execute(&statement, &[&types, &ids, &sequences]).await?;
        Ok(())
    }
}
