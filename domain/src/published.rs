//! What of an event may leave the event store.
//!
//! Events are published to topics that analytics consumers read, so a field that is a secret
//! (a password hash) stays in the event store, where the aggregates need it, and is dropped
//! from the published copy.

use cqrs_es::Aggregate;

use crate::account::Account;
use crate::comment::Comment;
use crate::conversation::Conversation;
use crate::follow::Follow;
use crate::like::Like;
use crate::user::User;
use crate::video::Video;

/// Every aggregate type, each published on a topic of its own.
pub const AGGREGATE_TYPES: &[&str] = &[
    Account::TYPE,
    User::TYPE,
    Video::TYPE,
    Like::TYPE,
    Comment::TYPE,
    Follow::TYPE,
    Conversation::TYPE,
];

/// `(aggregate type, event type, field)` triples that are never published.
const SECRET_FIELDS: &[(&str, &str, &str)] = &[(Account::TYPE, "AccountOpened", "password_hash")];

/// Whether `field` of an event of `event_type` on an `aggregate_type` must stay private.
pub fn is_secret(aggregate_type: &str, event_type: &str, field: &str) -> bool {
    SECRET_FIELDS.contains(&(aggregate_type, event_type, field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_are_secret_and_names_are_not() {
        assert!(is_secret("account", "AccountOpened", "password_hash"));
        assert!(!is_secret("account", "AccountOpened", "user_id"));
        assert!(!is_secret(User::TYPE, "UserRegistered", "name"));
    }
}
