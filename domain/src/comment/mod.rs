//! A comment on a video, an aggregate of its own: it knows its author and the video's author,
//! the two users who may delete it.

mod aggregate;
mod commands;
mod errors;
mod events;

pub use aggregate::Comment;
pub use commands::CommentCommand;
pub use errors::CommentError;
pub use events::CommentEvent;
