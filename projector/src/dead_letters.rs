//! Messages the projector could not read, kept whole in the read store (`dead_letters`), and
//! the aggregates they hold back: an aggregate (a topic and a key) with a dead letter not yet
//! redriven gets its later messages dead-lettered too, so that no aggregate is applied past
//! a gap (its applied sequence only goes up: the missing event could never be applied after).
//!
//! Projectors decide and dead-letter under a shared advisory lock, in the transaction that
//! applies the rest of their batch; `projector redrive` lists what is left under the
//! exclusive one. So a redrive that finds nothing left has not missed a message that a
//! projector was holding back at that moment.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

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

impl From<&BorrowedMessage<'_>> for Received {
    fn from(message: &BorrowedMessage<'_>) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
        }
    }
}

/// A message's aggregate as the broker knows it: its topic and key.
pub type Aggregate = (String, Option<Vec<u8>>);

impl Received {
    pub fn aggregate(&self) -> Aggregate {
        (self.topic.clone(), self.key.clone())
    }
}

/// Where each held-back aggregate's first dead letter not yet redriven sits: a message of the
/// aggregate from there on is held back; one before it (delivered again after a crash) is
/// not, and completes what it had started.
#[derive(Debug, Default)]
pub struct HeldBack(HashMap<Aggregate, (i32, i64)>);

impl HeldBack {
    pub fn holds(&self, received: &Received) -> bool {
        // Nearly always: nothing is held back, and no key is built to look up.
        if self.0.is_empty() {
            return false;
        }
        match self.0.get(&received.aggregate()) {
            // Offsets compare within a partition; any other partition is held back to be safe.
            Some(&(partition, offset)) => {
                received.partition != partition || received.offset >= offset
            }
            None => false,
        }
    }

    /// Holds back `received`'s aggregate from `received` on, unless it is held from earlier.
    pub fn start_at(&mut self, received: &Received) {
        self.0
            .entry(received.aggregate())
            .or_insert((received.partition, received.offset));
    }
}

/// Where the aggregates of `batch` are held back; `tx` holds [`LOCK`] shared.
pub async fn held_back(
    tx: &Transaction<'_>,
    batch: &[&Received],
) -> Result<HeldBack, tokio_postgres::Error> {
    let (topics, keys): (Vec<&str>, Vec<&[u8]>) = batch
        .iter()
        .filter_map(|received| Some((received.topic.as_str(), received.key.as_deref()?)))
        .unzip();
    let statement = tx
        .prepare_cached(
            "SELECT topic, key, partition, min(\"offset\") FROM dead_letters
              WHERE redriven_at IS NULL
                AND (topic, key) IN (SELECT * FROM unnest($1::text[], $2::bytea[]))
              GROUP BY topic, key, partition",
        )
        .await?;
    let rows = tx.query(&statement, &[&topics, &keys]).await?;
    let mut held_back = HeldBack::default();
    for row in rows {
        let start = (row.get(2), row.get(3));
        let first = held_back.0.entry((row.get(0), row.get(1))).or_insert(start);
        *first = (*first).min(start);
    }
    Ok(held_back)
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
