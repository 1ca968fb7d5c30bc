//! Applies dead-lettered messages once the projector can read them (after an upgrade that
//! knows a new event type or version, say). Messages are taken in the order they were
//! dead-lettered, which is their aggregate's order; a message that still cannot be read stays,
//! and so do the later messages of its aggregate. Projectors may run meanwhile: they keep
//! holding an aggregate back until its last dead letter is redriven.

use std::collections::HashSet;

use infra::envelope::PublishedEvent;

use crate::projections::{ProjectionError, Projections};

/// Dead letters read at a time.
const PAGE: i64 = 100;

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
    let client = pool.get().await?;
    let mut redriven = Redriven::default();
    // Aggregates (topic, key) with a message that still cannot be read.
    let mut stuck: HashSet<(String, Option<Vec<u8>>)> = HashSet::new();
    let mut after = 0_i64;
    loop {
        let page = client
            .query(
                "SELECT id, topic, key, payload FROM dead_letters
                  WHERE redriven_at IS NULL AND id > $1
                  ORDER BY id
                  LIMIT $2",
                &[&after, &PAGE],
            )
            .await?;
        if page.is_empty() {
            return Ok(redriven);
        }
        for row in page {
            let id: i64 = row.get(0);
            after = id;
            let aggregate = (row.get::<_, String>(1), row.get::<_, Option<Vec<u8>>>(2));
            if stuck.contains(&aggregate) {
                redriven.left += 1;
                continue;
            }
            let payload: Option<Vec<u8>> = row.get(3);
            let applied = match PublishedEvent::from_json(payload.as_deref().unwrap_or_default()) {
                Ok(event) => projections.apply(&event).await,
                Err(error) => Err(ProjectionError::Unreadable(error)),
            };
            match applied {
                Ok(outcome) => {
                    tracing::info!(dead_letter = id, ?outcome, "redriven");
                    client
                        .execute(
                            "UPDATE dead_letters SET redriven_at = now() WHERE id = $1",
                            &[&id],
                        )
                        .await?;
                    redriven.applied += 1;
                }
                Err(ProjectionError::Unreadable(error)) => {
                    tracing::warn!(dead_letter = id, %error, "still unreadable: left, with the rest of its aggregate");
                    stuck.insert(aggregate);
                    redriven.left += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}
