//! Chat messages: rows in `messages`, read by conversation and time.

use domain::conversation::ConversationEvent;
use infra::envelope::{EnvelopeError, PublishedEvent};

use super::plan::Plan;

pub fn plan(event: &PublishedEvent) -> Result<Plan, EnvelopeError> {
    Ok(match event.domain_event()? {
        ConversationEvent::MessageSent {
            message_id,
            from_user_id,
            to_user_id,
            content,
            sent_at,
        } => {
            let (from, to) = (from_user_id.get(), to_user_id.get());
            Plan::new().row(
                "INSERT INTO messages (id, low_id, high_id, from_id, to_id, content, sent_at)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                      $5::bigint[], $6::text[], $7::bigint[])
                 ON CONFLICT (id) DO NOTHING",
                vec![
                    message_id.get().into(),
                    from.min(to).into(),
                    from.max(to).into(),
                    from.into(),
                    to.into(),
                    content.to_string().into(),
                    sent_at.into(),
                ],
            )
        }
    })
}
