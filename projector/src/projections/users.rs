//! User profiles: a row in `users` and the card in Redis.

use domain::user::UserEvent;
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;

use super::plan::Plan;

pub fn plan(event: &PublishedEvent, keys: &Keys) -> Result<Plan, EnvelopeError> {
    let user_id = super::numeric_aggregate_id(event)?;
    Ok(match event.domain_event()? {
        UserEvent::UserRegistered { name } => Plan::new()
            .row(
                "INSERT INTO users (id, name, registered_at)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[])
                 ON CONFLICT (id) DO NOTHING",
                vec![
                    user_id.into(),
                    name.to_string().into(),
                    event.occurred_at.into(),
                ],
            )
            .redis(|change| {
                change.hset(
                    keys.user(user_id),
                    &[("name", name.to_string()), ("signature", String::new())],
                )
            }),
    })
}
