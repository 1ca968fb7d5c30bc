//! A user's public profile, one aggregate per user id.

mod aggregate;
mod commands;
mod errors;
mod events;
mod name;

pub use aggregate::User;
pub use commands::UserCommand;
pub use errors::UserError;
pub use events::UserEvent;
pub use name::{UserName, UserNameError};
