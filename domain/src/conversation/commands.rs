use crate::text::MessageText;
use crate::{MessageId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationCommand {
    Send {
        message_id: MessageId,
        from: UserId,
        to: UserId,
        content: MessageText,
        /// The clock, in epoch milliseconds.
        now: i64,
    },
}
