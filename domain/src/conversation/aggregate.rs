use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{ConversationCommand, ConversationError, ConversationEvent};
use crate::UserId;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    last_sent_at: i64,
}

impl Conversation {
    /// The aggregate id of the conversation between `a` and `b`, the same both ways.
    pub fn id(a: UserId, b: UserId) -> String {
        format!("{}:{}", a.min(b), a.max(b))
    }

    pub fn decide(
        &self,
        command: ConversationCommand,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        match command {
            ConversationCommand::Send {
                message_id,
                from,
                to,
                content,
                now,
            } => {
                if from == to {
                    return Err(ConversationError::ToYourself);
                }
                Ok(vec![ConversationEvent::MessageSent {
                    message_id,
                    from_user_id: from,
                    to_user_id: to,
                    content,
                    // Two messages in one millisecond, or a clock that stepped back, must
                    // still give each message a time of its own, after the one before.
                    sent_at: now.max(self.last_sent_at + 1),
                }])
            }
        }
    }
}

impl Aggregate for Conversation {
    const TYPE: &'static str = "conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = ConversationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        crate::record(self, sink, events).await
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ConversationEvent::MessageSent { sent_at, .. } => self.last_sent_at = sent_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::MessageText;
    use crate::MessageId;

    fn user(id: i64) -> UserId {
        UserId::try_from(id).unwrap()
    }

    fn send(id: i64, from: i64, to: i64, now: i64) -> ConversationCommand {
        ConversationCommand::Send {
            message_id: MessageId::try_from(id).unwrap(),
            from: user(from),
            to: user(to),
            content: MessageText::parse("hi").unwrap(),
            now,
        }
    }

    fn sent_at(events: &[ConversationEvent]) -> i64 {
        match events {
            [ConversationEvent::MessageSent { sent_at, .. }] => *sent_at,
            other => panic!("expected one message, got {other:?}"),
        }
    }

    #[test]
    fn messages_get_strictly_increasing_times() {
        let mut conversation = Conversation::default();
        let mut times = vec![];
        // Same millisecond, then a clock that stepped back.
        for (id, now) in [(1, 100), (2, 100), (3, 90), (4, 200)] {
            let events = conversation.decide(send(id, 1, 2, now)).unwrap();
            times.push(sent_at(&events));
            events.into_iter().for_each(|e| conversation.apply(e));
        }
        assert_eq!(times, vec![100, 101, 102, 200]);
    }

    #[test]
    fn both_directions_share_one_conversation() {
        assert_eq!(Conversation::id(user(2), user(1)), "1:2");
        assert_eq!(Conversation::id(user(1), user(2)), "1:2");
    }

    #[test]
    fn nobody_writes_to_themselves() {
        assert_eq!(
            Conversation::default().decide(send(1, 1, 1, 5)),
            Err(ConversationError::ToYourself)
        );
    }
}
