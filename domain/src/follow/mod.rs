//! One user following another: an aggregate per (follower, followee) pair, so that repeated
//! or concurrent follows and unfollows of a pair are serialised and never double count.

mod aggregate;
mod commands;
mod errors;
mod events;

pub use aggregate::Follow;
pub use commands::FollowCommand;
pub use errors::FollowError;
pub use events::FollowEvent;
