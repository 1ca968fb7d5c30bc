//! At-most-once application of events to the Postgres read models.

use deadpool_postgres::Transaction;
use infra::envelope::PublishedEvent;

/// Records, in the transaction that applies `event`, that it is applied. Returns false when it
/// (or a later event of its aggregate) was applied before: Kafka delivered it again, and the
/// caller must change nothing. The upsert locks the aggregate's row, so two projectors handed
/// the same partition during a rebalance cannot both apply an event.
pub async fn mark_applied(
    tx: &Transaction<'_>,
    event: &PublishedEvent,
) -> Result<bool, tokio_postgres::Error> {
    let applied = tx
        .query_opt(
            "INSERT INTO applied_sequences (aggregate_type, aggregate_id, sequence)
             VALUES ($1, $2, $3)
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                SET sequence = EXCLUDED.sequence
              WHERE applied_sequences.sequence < EXCLUDED.sequence
             RETURNING 1",
            &[&event.aggregate_type, &event.aggregate_id, &event.sequence],
        )
        .await?;
    Ok(applied.is_some())
}
