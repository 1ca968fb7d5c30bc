use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::text::MessageText;
use crate::{MessageId, UserId};

/// Events of the `conversation` aggregate; their JSON is part of the public contract
/// (docs/events.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConversationEvent {
    MessageSent {
        message_id: MessageId,
        from_user_id: UserId,
        to_user_id: UserId,
        content: MessageText,
        /// Epoch milliseconds, strictly increasing within a conversation.
        sent_at: i64,
    },
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MessageSent { .. } => "MessageSent".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
