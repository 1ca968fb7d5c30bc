//! A published video: who published it, under which title, where its media is stored. Likes
//! and comments are aggregates of their own, so that publishing history stays small and
//! concurrent likes of one video never conflict with each other.

mod aggregate;
mod commands;
mod errors;
mod events;

pub use aggregate::Video;
pub use commands::{Media, VideoCommand};
pub use errors::VideoError;
pub use events::VideoEvent;
