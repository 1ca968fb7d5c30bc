//! The history a replay reads: the event store, the only complete and authoritative record
//! (the topics hold what was published, for as long as the broker keeps it; the store holds
//! every accepted write, published yet or not).
//!
//! The whole history is read in the order it lies in the table, a range of blocks at a time
//! (a TID range scan: sequential reads, each range its own short statement, so no snapshot
//! stays open for the length of a replay to keep vacuum from the outbox). An aggregate's
//! events lie there in sequence order nearly always (event n+1 is written once event n is
//! committed, and events are never updated or deleted); one that lies before its predecessor
//! is held by the replay until it comes. What was written since, the catch-up reads per
//! aggregate, in key order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use infra::envelope::StoredEvent;
use tokio_postgres::Row;

use crate::applied::Aggregate;
use crate::projections::Projections;

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
            client: infra::read_store::connect_one(url, super::LONG_SESSION).await?,
            followed: Projections::aggregate_types()
                .iter()
                .map(|&aggregate_type| aggregate_type.to_owned())
                .collect(),
        })
    }

    /// How many events the store holds: what a replay reads.
    pub async fn count(&self) -> Result<i64, tokio_postgres::Error> {
        Ok(self
            .client
            .query_one("SELECT count(*) FROM events", &[])
            .await?
            .get(0))
    }

    /// How many blocks the table has now (more as events are written).
    pub async fn blocks(&self) -> Result<i64, tokio_postgres::Error> {
        Ok(self
            .client
            .query_one(
                "SELECT pg_relation_size('events') / current_setting('block_size')::bigint",
                &[],
            )
            .await?
            .get(0))
    }

    /// The events in blocks `from` up to `to` (not included), in the order they lie there.
    pub async fn in_blocks(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM events e
                      WHERE e.ctid >= format('(%s,0)', $1::bigint)::tid
                        AND e.ctid < format('(%s,0)', $2::bigint)::tid"
                ),
                &[&from, &to],
            )
            .await?;
        Ok(rows.iter().map(stored).collect())
    }

    /// Each followed aggregate whose last sequence in the store is past `applied`'s record of
    /// it, with that record (0 for one never applied). Streamed, not collected: the store
    /// holds far more aggregates than are behind.
    pub async fn behind(
        &self,
        applied: &HashMap<Aggregate, i64>,
    ) -> Result<Vec<(Aggregate, i64)>, tokio_postgres::Error> {
        let rows = self
            .client
            .query_raw(
                "SELECT aggregate_type, aggregate_id, max(sequence) FROM events
                  WHERE aggregate_type = ANY($1)
                  GROUP BY aggregate_type, aggregate_id",
                [&self.followed],
            )
            .await?;
        futures::pin_mut!(rows);
        let mut behind = vec![];
        while let Some(row) = rows.try_next().await? {
            let aggregate: Aggregate = (row.get(0), row.get(1));
            let head: i64 = row.get(2);
            let last = applied.get(&aggregate).copied().unwrap_or(0);
            if head > last {
                behind.push((aggregate, last));
            }
        }
        Ok(behind)
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
