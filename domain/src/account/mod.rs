//! A login: one aggregate per user name, so that the event store's uniqueness of
//! `(aggregate_id, sequence)` decides which of two simultaneous registrations of a name wins.

mod aggregate;
mod commands;
mod errors;
mod events;
mod password;

pub use aggregate::Account;
pub use commands::AccountCommand;
pub use errors::AccountError;
pub use events::AccountEvent;
pub use password::{Password, PasswordError, PasswordHash};
