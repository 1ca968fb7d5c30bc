//! Messages the projector could not read, kept whole in the read store (`dead_letters`), and
//! the aggregates they hold back: an aggregate (a topic and a key) with a dead letter not yet
//! redriven gets its later messages dead-lettered too, so that no aggregate is applied past
//! a gap (its applied sequence only goes up: the missing event could never be applied after).
//!
//! Projectors decide and dead-letter under a shared advisory lock, in the transaction that
//! applies the rest of their batch; `projector redrive` lists what is left under the
//! exclusive one. So a redrive that finds nothing left has not missed a message that a
//! projector was holding back at that moment.

use std::collections::HashSet;

use deadpool_postgres::Transaction;

pub const HELD_BACK: &str = "an earlier event of its aggregate is dead-lettered";

/// The advisory lock deciding what is held back.
pub const LOCK: i64 = 0x0064_6561_645f_6c74;

/// A message as the broker delivered it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// A message's aggregate as the broker knows it: its topic and key.
pub type Aggregate = (String, Option<Vec<u8>>);

impl Received {
    pub fn aggregate(&self) -> Aggregate {
        (self.topic.clone(), self.key.clone())
    }
}

/// Takes the shared lock for the rest of `tx`, then tells which aggregates of `batch` are
/// held back.
pub async fn held_back(
    tx: &Transaction<'_>,
    batch: &[&Received],
) -> Result<HashSet<Aggregate>, tokio_postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&LOCK])
        .await?;
    let keys: Vec<&[u8]> = batch
        .iter()
        .filter_map(|received| received.key.as_deref())
        .collect();
    let rows = tx
        .query(
            "SELECT DISTINCT topic, key FROM dead_letters
              WHERE redriven_at IS NULL AND key = ANY($1)",
            &[&keys],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Keeps `received` whole with the reason. A message dead-lettered before (delivered again
/// after a crash) is kept once.
pub async fn insert(
    tx: &Transaction<'_>,
    received: &Received,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    tracing::error!(
        topic = received.topic,
        partition = received.partition,
        offset = received.offset,
        reason,
        "dead-lettering a message"
    );
    tx.execute(
        "INSERT INTO dead_letters (topic, partition, \"offset\", key, payload, error)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (topic, partition, \"offset\") DO NOTHING",
        &[
            &received.topic,
            &received.partition,
            &received.offset,
            &received.key,
            &received.payload,
            &reason,
        ],
    )
    .await?;
    Ok(())
}
