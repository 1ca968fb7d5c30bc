//! Chat messages.

use domain::conversation::{Conversation, ConversationCommand};
use domain::text::MessageText;
use domain::UserId;
use infra::event_store::EventStore;
use postgres_es::PostgresCqrs;

use crate::writes::{execute, now_ms, Facts, WriteError, SNAPSHOT_EVERY};

pub struct Messages {
    store: EventStore,
    facts: Facts,
    conversations: PostgresCqrs<Conversation>,
}

impl Messages {
    pub fn new(store: &EventStore, facts: Facts) -> Self {
        Self {
            conversations: store.snapshotting_cqrs(SNAPSHOT_EVERY, ()),
            store: store.clone(),
            facts,
        }
    }

    pub async fn send(
        &self,
        from: UserId,
        to: UserId,
        content: MessageText,
    ) -> Result<(), WriteError> {
        if from != to {
            self.facts.existing_user(to).await?;
        }
        let message_id = self.store.next_message_id().await?;
        let command = ConversationCommand::Send {
            message_id,
            from,
            to,
            content,
            now: now_ms(),
        };
        execute(
            &self.conversations,
            &Conversation::id(from, to),
            command,
            |error| WriteError::Refused(error.to_string()),
        )
        .await
    }
}
