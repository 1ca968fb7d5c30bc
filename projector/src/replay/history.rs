//! The history a replay reads: the event store, the only complete and authoritative record
//! (the topics hold what was published, for as long as the broker keeps it; the store holds
//! every accepted write, published yet or not). Read in pages in key order (aggregate type,
//! aggregate id, sequence), each page its own short statement: no snapshot is held open for
//! the length of a replay, which would keep vacuum from the outbox meanwhile.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use infra::envelope::StoredEvent;
use tokio_postgres::Row;

use crate::applied::Aggregate;
use crate::projections::Projections;

/// An event's place in key order: where a page ends, and the next begins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventKey {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
}

impl EventKey {
    /// Before every event.
    pub fn start() -> Self {
        Self {
            aggregate_type: String::new(),
            aggregate_id: String::new(),
            sequence: -1,
        }
    }

    pub fn of(event: &StoredEvent) -> Self {
        Self {
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
        }
    }
}

const COLUMNS: &str = "e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                       e.event_version, e.payload, e.recorded_at";

pub struct History {
    client: tokio_postgres::Client,
    /// The aggregate types read models follow: the others are not read at all.
    followed: Vec<String>,
}

impl History {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: infra::read_store::connect_one(url, "").await?,
            followed: Projections::aggregate_types()
                .iter()
                .map(|&aggregate_type| aggregate_type.to_owned())
                .collect(),
        })
    }

    /// How many events read models follow: what a replay has to read.
    pub async fn count(&self) -> Result<i64, tokio_postgres::Error> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM events WHERE aggregate_type = ANY($1)",
                &[&self.followed],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Up to `limit` events after `after`, in key order: an aggregate's events in sequence
    /// order, with no gap (event n+1 is only ever written once event n is committed).
    pub async fn page(
        &self,
        after: &EventKey,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM events e
                      WHERE e.aggregate_type = ANY($1)
                        AND (e.aggregate_type, e.aggregate_id, e.sequence) > ($2, $3, $4)
                      ORDER BY e.aggregate_type, e.aggregate_id, e.sequence
                      LIMIT $5"
                ),
                &[
                    &self.followed,
                    &after.aggregate_type,
                    &after.aggregate_id,
                    &after.sequence,
                    &limit,
                ],
            )
            .await?;
        Ok(rows.iter().map(stored).collect())
    }

    /// Each followed aggregate's last sequence.
    pub async fn heads(&self) -> Result<HashMap<Aggregate, i64>, tokio_postgres::Error> {
        let rows = self
            .client
            .query(
                "SELECT aggregate_type, aggregate_id, max(sequence) FROM events
                  WHERE aggregate_type = ANY($1)
                  GROUP BY aggregate_type, aggregate_id",
                &[&self.followed],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect())
    }

    /// The events of each aggregate of `since` after the sequence given with it, in key order.
    pub async fn after(
        &self,
        since: &[(Aggregate, i64)],
    ) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
        if since.is_empty() {
            return Ok(vec![]);
        }
        let types: Vec<&str> = since.iter().map(|((t, _), _)| t.as_str()).collect();
        let ids: Vec<&str> = since.iter().map(|((_, id), _)| id.as_str()).collect();
        let sequences: Vec<i64> = since.iter().map(|(_, sequence)| *sequence).collect();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {COLUMNS}
                       FROM unnest($1::text[], $2::text[], $3::bigint[])
                            AS since (aggregate_type, aggregate_id, sequence)
                       JOIN events e ON e.aggregate_type = since.aggregate_type
                                    AND e.aggregate_id = since.aggregate_id
                                    AND e.sequence > since.sequence
                      ORDER BY e.aggregate_type, e.aggregate_id, e.sequence"
                ),
                &[&types, &ids, &sequences],
            )
            .await?;
        Ok(rows.iter().map(stored).collect())
    }
}

fn stored(row: &Row) -> StoredEvent {
    StoredEvent {
        aggregate_type: row.get(0),
        aggregate_id: row.get(1),
        sequence: row.get(2),
        event_type: row.get(3),
        event_version: row.get(4),
        payload: row.get(5),
        recorded_at: row.get::<_, DateTime<Utc>>(6),
    }
}
