//! One user's like of one video: an aggregate per (video, user) pair, so that the event store's
//! optimistic lock serialises the toggles of that pair and nothing else. A like that is
//! already there, or an unlike of what is not liked, decides no event: counts derived from
//! these events can neither double nor go below zero.

mod aggregate;
mod commands;
mod events;

pub use aggregate::Like;
pub use commands::LikeCommand;
pub use events::LikeEvent;
