//! Chat messages: rows in `messages`, read by conversation and time.

use domain::conversation::ConversationEvent;
use infra::envelope::{EnvelopeError, PublishedEvent};

use super::plan::{p, Plan};

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
            Plan::new().sql(
                "INSERT INTO messages (id, low_id, high_id, from_id, to_id, content, sent_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                vec![
                    p(message_id.get()),
                    p(from.min(to)),
                    p(from.max(to)),
                    p(from),
                    p(to),
                    p(content.to_string()),
                    p(sent_at),
                ],
            )
        }
    })
}
