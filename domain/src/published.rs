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

/// One published event type: its aggregate type, and the version of its payload this build
/// writes (`event_version`). A payload whose shape changes gets a new version, and a schema
/// file of its own beside the old one's (docs/events.md, "A new version of an event").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    pub version: u32,
}

const fn event(aggregate_type: &'static str, event_type: &'static str, version: u32) -> EventType {
    EventType {
        aggregate_type,
        event_type,
        version,
    }
}

/// Every event type published, as the contract's schemas list them (a test in infra checks
/// this list against the event enums, and the schema files against both).
pub const EVENT_TYPES: &[EventType] = &[
    event(Account::TYPE, "AccountOpened", 1),
    event(User::TYPE, "UserRegistered", 1),
    event(Video::TYPE, "VideoPublished", 1),
    event(Like::TYPE, "VideoLiked", 1),
    event(Like::TYPE, "VideoUnliked", 1),
    event(Comment::TYPE, "CommentPosted", 1),
    event(Comment::TYPE, "CommentDeleted", 1),
    event(Follow::TYPE, "UserFollowed", 1),
    event(Follow::TYPE, "UserUnfollowed", 1),
    event(Conversation::TYPE, "MessageSent", 1),
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
