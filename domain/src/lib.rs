//! The rules of the Douyin backend, free of IO.
//!
//! Each aggregate keeps the smallest piece of state that owns a rule: an [`account`] per user
//! name holds the uniqueness of names and the credentials, a [`user`] per user id holds the
//! profile. Aggregates decide with a pure `decide` function; the `cqrs_es::Aggregate` impls
//! only hand its events to the framework.

pub mod account;
pub mod id;
pub mod published;
pub mod user;

pub use id::UserId;
