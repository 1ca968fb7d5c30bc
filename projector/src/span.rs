//! Which messages a batch holds: per partition, its first and last offsets.

use std::collections::BTreeMap;

/// Per partition (`topic`, `partition`), the first and last offsets of a batch's messages.
/// Empty for events an operator redrives (they come from the dead letters, not the broker).
#[derive(Debug, Default, Clone)]
pub struct Span(BTreeMap<(String, i32), (i64, i64)>);

impl Span {
    pub fn of<'m>(messages: impl IntoIterator<Item = (&'m str, i32, i64)>) -> Self {
        let mut span = BTreeMap::new();
        for (topic, partition, offset) in messages {
            span.entry((topic.to_owned(), partition))
                .and_modify(|(first, last): &mut (i64, i64)| {
                    *first = (*first).min(offset);
                    *last = (*last).max(offset);
                })
                .or_insert((offset, offset));
        }
        Self(span)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Per partition, its name in the Redis record of offsets (`topic/partition`), and the
    /// first and last offsets.
    pub fn in_redis(&self) -> Vec<(String, i64, i64)> {
        self.0
            .iter()
            .map(|((topic, partition), (first, last))| {
                (format!("{topic}/{partition}"), *first, *last)
            })
            .collect()
    }

    /// Records the batch's last offsets in `applied_offsets`, in its transaction (nothing for
    /// an empty span).
    pub async fn record(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        if self.is_empty() {
            return Ok(());
        }
        let mut topics = vec![];
        let mut partitions = vec![];
        let mut offsets = vec![];
        for ((topic, partition), (_, last)) in &self.0 {
            topics.push(topic.clone());
            partitions.push(*partition);
            offsets.push(*last);
        }
        let statement = tx
            .prepare_cached(
                "INSERT INTO applied_offsets AS applied (topic, partition, \"offset\")
                 SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
                 ON CONFLICT (topic, partition) DO UPDATE
                    SET \"offset\" = GREATEST(applied.\"offset\", excluded.\"offset\")",
            )
            .await?;
        tx.execute(&statement, &[&topics, &partitions, &offsets])
            .await?;
        Ok(())
    }
}
