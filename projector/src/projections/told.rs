//! What the projector tells the command APIs after each batch: where the batch's aggregates
//! stand, so that requests waiting for their writes to be readable are answered
//! ([`infra::read_after_write`]). One `NOTIFY` statement a batch, on a pooled connection,
//! after the batch is in both stores (or in Postgres, Redis being away or rebuilt).

use infra::read_after_write::{payloads, Notice, Reached, APPLIED_CHANNEL};

use crate::applied::Aggregate;

/// How long telling may hold the next batch up: a notice later than this is of little use
/// to a request waiting within its bound.
const SENT_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

/// What to tell of a batch carried out.
pub struct Carried<'a> {
    /// Each aggregate's last applied sequence in Postgres.
    pub positions: &'a [(Aggregate, i64)],
    /// Events dead-lettered or held back.
    pub stopped: &'a [Notice],
    /// Whether Redis took the batch too.
    pub in_redis: bool,
}

/// The notices of one batch.
pub struct Told(Vec<Notice>);

impl Told {
    pub fn of(carried: &Carried<'_>) -> Self {
        let reached = if carried.in_redis {
            Reached::Applied
        } else {
            Reached::PostgresOnly
        };
        let applied = carried.positions.iter().filter(|(_, last)| *last > 0).map(
            |((aggregate_type, aggregate_id), last)| Notice {
                reached,
                sequence: *last,
                aggregate_type: aggregate_type.clone(),
                aggregate_id: aggregate_id.clone(),
            },
        );
        Self(applied.chain(carried.stopped.iter().cloned()).collect())
    }

    /// Sends the notices. A failure is logged and counted, never the batch's: the requests
    /// waiting then answer at their bound.
    pub async fn send(self, pool: &deadpool_postgres::Pool) {
        if self.0.is_empty() {
            return;
        }
        let payloads = payloads(&self.0);
        let sent = async {
            let client = pool.get().await.map_err(|error| error.to_string())?;
            let statement = client
                .prepare_cached("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
                .await
                .map_err(|error| error.to_string())?;
            client
                .execute(&statement, &[&APPLIED_CHANNEL, &payloads])
                .await
                .map_err(|error| error.to_string())
        };
        let sent = tokio::time::timeout(SENT_WITHIN, sent)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {SENT_WITHIN:?}")));
        if let Err(error) = sent {
            metrics::counter!(infra::metrics::PROJECTOR_TELL_FAILURES).increment(1);
            tracing::warn!(%error, "could not tell the command APIs what was applied");
        }
    }
}
