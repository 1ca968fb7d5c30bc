//! User profiles in Postgres (`users`): name, signature and images, one row per user.

use domain::user::UserEvent;
use infra::envelope::PublishedEvent;

use super::{Outcome, ProjectionError};
use crate::applied::mark_applied;

pub struct UserProjection {
    pool: deadpool_postgres::Pool,
}

impl UserProjection {
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Self { pool }
    }

    pub async fn apply(&self, event: &PublishedEvent) -> Result<Outcome, ProjectionError> {
        let user_event: UserEvent = event.domain_event()?;
        let user_id: i64 = event
            .aggregate_id
            .parse()
            .map_err(|_| infra::envelope::EnvelopeError::BadAggregateId(event.event_id.clone()))?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !mark_applied(&tx, event).await? {
            return Ok(Outcome::AlreadyApplied);
        }
        match user_event {
            UserEvent::UserRegistered { name } => {
                tx.execute(
                    "INSERT INTO users (id, name, registered_at) VALUES ($1, $2, $3)",
                    &[&user_id, &name.as_str(), &event.occurred_at],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(Outcome::Applied)
    }
}
