//! User profiles: a row in `users` and the card in Redis.

use domain::user::UserEvent;
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;

use super::plan::{p, Plan};

pub fn plan(event: &PublishedEvent, keys: &Keys) -> Result<Plan, EnvelopeError> {
    let user_id: i64 = event
        .aggregate_id
        .parse()
        .map_err(|_| EnvelopeError::BadAggregateId(event.event_id.clone()))?;
    Ok(match event.domain_event()? {
        UserEvent::UserRegistered { name } => Plan::new()
            .sql(
                "INSERT INTO users (id, name, registered_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                vec![p(user_id), p(name.to_string()), p(event.occurred_at)],
            )
            .redis(|change| {
                change.hset(
                    keys.user(user_id),
                    &[("name", name.to_string()), ("signature", String::new())],
                )
            }),
    })
}
