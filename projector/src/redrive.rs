//! Applies dead-lettered messages once the projector can read them (after an upgrade that
//! knows a new event type or version, say). Each aggregate's messages are taken in the order
//! the broker had them; a message that still cannot be read stays, and so do the later
//! messages of its aggregate. Projectors may run meanwhile: they hold an aggregate back until
//! its last dead letter is redriven, and a redrive goes on until a listing, taken under the
//! exclusive lock of [`crate::dead_letters`], finds nothing new.

use std::collections::HashSet;

use infra::envelope::PublishedEvent;

use crate::dead_letters::{self, Aggregate};
use crate::projections::{ProjectionError, Projections};

/// What a redrive did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Messages applied (or found applied already) and marked redriven.
    pub applied: usize,
    /// Messages left dead-lettered: unreadable still, or behind one that is.
    pub left: usize,
}

pub async fn redrive(
    pool: &deadpool_postgres::Pool,
    projections: &Projections,
) -> anyhow::Result<Redriven> {
    let mut client = pool.get().await?;
    let mut redriven = Redriven::default();
    // Aggregates with a message that still cannot be read, and the messages left for good.
    let mut stuck: HashSet<Aggregate> = HashSet::new();
    let mut left: HashSet<i64> = HashSet::new();
    loop {
        let listing = client.transaction().await?;
        listing
            .execute("SELECT pg_advisory_xact_lock($1)", &[&dead_letters::LOCK])
            .await?;
        let rows = listing
            .query(
                // No payloads: projectors wait for this listing.
                "SELECT id, topic, key FROM dead_letters
                  WHERE redriven_at IS NULL
                  ORDER BY topic, key, partition, \"offset\"",
                &[],
            )
            .await?;
        listing.commit().await?;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|row| !left.contains(&row.get::<_, i64>(0)))
            .collect();
        if rows.is_empty() {
            return Ok(redriven);
        }
        for row in rows {
            let id: i64 = row.get(0);
            let aggregate: Aggregate = (row.get(1), row.get(2));
            if stuck.contains(&aggregate) {
                left.insert(id);
                redriven.left += 1;
                continue;
            }
            let payload: Option<Vec<u8>> = client
                .query_one("SELECT payload FROM dead_letters WHERE id = $1", &[&id])
                .await?
                .get(0);
            let applied = match PublishedEvent::from_json(payload.as_deref().unwrap_or_default()) {
                Ok(event) => projections.apply(event).await,
                Err(error) => Err(ProjectionError::Unreadable(error)),
            };
            match applied {
                Ok(outcome) => {
                    tracing::info!(dead_letter = id, ?outcome, "redriven");
                    // Like a batch, behind the switch of a replay (`crate::replay`): the mark
                    // lands in the generation the switch carries the dead letters to, or
                    // before the switch copies them.
                    let marking = client.transaction().await?;
                    marking
                        .execute(
                            "SELECT pg_advisory_xact_lock_shared($1)",
                            &[&infra::read_store::GENERATION_SWITCH_LOCK],
                        )
                        .await?;
                    marking
                        .execute(
                            "UPDATE dead_letters SET redriven_at = now() WHERE id = $1",
                            &[&id],
                        )
                        .await?;
                    marking.commit().await?;
                    redriven.applied += 1;
                }
                Err(ProjectionError::Unreadable(error)) => {
                    tracing::warn!(dead_letter = id, %error, "still unreadable: left, with the rest of its aggregate");
                    stuck.insert(aggregate);
                    left.insert(id);
                    redriven.left += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}
