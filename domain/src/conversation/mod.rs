//! The chat between two users: one aggregate per pair, so that its messages are ordered by
//! the aggregate's sequence, published to one partition in that order, and stamped with
//! strictly increasing times. A client polling with the newest time it holds therefore never
//! misses a message nor sees one twice.

mod aggregate;
mod commands;
mod errors;
mod events;

pub use aggregate::Conversation;
pub use commands::ConversationCommand;
pub use errors::ConversationError;
pub use events::ConversationEvent;
