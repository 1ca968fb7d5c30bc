#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error("you cannot send a message to yourself")]
    ToYourself,
}
