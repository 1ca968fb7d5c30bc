//! What a message on the topics means to analytics: which hour it falls in, who acted, and
//! which counters it moves. Everything here follows docs/events.md, the public contract, and
//! nothing else: the domain's own types are not used, as an outside consumer has none.

use chrono::{DateTime, Utc};
use infra::envelope::PublishedEvent;
use serde_json::{Map, Value};

/// Where a message was read: the place a message that is not an event is known by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A message as received: an event envelope, or something else.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub position: Position,
    pub message: Message,
}

#[derive(Clone, Debug)]
pub enum Message {
    Event(Box<PublishedEvent>),
    /// Not an envelope (bad JSON, a field missing, a sequence below 1): nothing can place it
    /// in an aggregate's history, so it is skipped and listed by position.
    NotAnEvent(String),
}

impl Incoming {
    pub fn read(position: Position, value: Option<&[u8]>) -> Self {
        let message = match value.map(PublishedEvent::from_json) {
            None => Message::NotAnEvent("the message has no value".to_owned()),
            Some(Err(error)) => Message::NotAnEvent(format!("not an event envelope: {error}")),
            Some(Ok(event)) if event.sequence < 1 => {
                Message::NotAnEvent(format!("sequence {} is below 1", event.sequence))
            }
            Some(Ok(event)) => Message::Event(Box::new(event)),
        };
        Self { position, message }
    }
}

/// What an event did, as far as the hourly numbers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A registration claimed a name: only makes its user active (the profile's
    /// `UserRegistered` is the sign-up counted).
    AccountOpened,
    SignedUp,
    VideoPublished,
    Liked {
        video_id: i64,
    },
    Unliked {
        video_id: i64,
    },
    CommentPosted,
    CommentDeleted,
    Followed,
    Unfollowed,
    MessageSent,
}

/// One event, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fact {
    pub hour: DateTime<Utc>,
    /// The user who made the write that recorded the event.
    pub actor: i64,
    pub action: Action,
}

/// Why an event is not counted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unknown {
    #[error("unknown event type")]
    Type,
    #[error("unknown version of a known event type")]
    Version,
    #[error("payload unreadable: {0}")]
    Payload(String),
}

/// The event types of the contract, each at the only version published so far.
const KNOWN: &[&str] = &[
    "AccountOpened",
    "UserRegistered",
    "VideoPublished",
    "VideoLiked",
    "VideoUnliked",
    "CommentPosted",
    "CommentDeleted",
    "UserFollowed",
    "UserUnfollowed",
    "MessageSent",
];

/// The start of the hour `at` falls in, UTC.
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = at.timestamp();
    DateTime::from_timestamp(seconds - seconds.rem_euclid(3600), 0)
        .expect("the start of an hour of a valid time is a valid time")
}

/// Reads an event per `(event_type, event_version)`, as the contract says consumers should:
/// a version this build does not know may mean something else, even if its fields fit.
pub fn read(event: &PublishedEvent) -> Result<Fact, Unknown> {
    let payload = &event.payload;
    let (action, actor) = match (event.event_type.as_str(), event.event_version) {
        ("AccountOpened", 1) => (Action::AccountOpened, id(payload, "user_id")?),
        // The profile's aggregate id is the user id; its payload has only the name.
        ("UserRegistered", 1) => (
            Action::SignedUp,
            event.aggregate_id.parse().map_err(|_| {
                Unknown::Payload(format!(
                    "aggregate id {:?} is not a user id",
                    event.aggregate_id
                ))
            })?,
        ),
        ("VideoPublished", 1) => (Action::VideoPublished, id(payload, "author_id")?),
        ("VideoLiked", 1) => (
            Action::Liked {
                video_id: id(payload, "video_id")?,
            },
            id(payload, "user_id")?,
        ),
        ("VideoUnliked", 1) => (
            Action::Unliked {
                video_id: id(payload, "video_id")?,
            },
            id(payload, "user_id")?,
        ),
        ("CommentPosted", 1) => (Action::CommentPosted, id(payload, "user_id")?),
        // The comment's author or the video's: whoever deleted it.
        ("CommentDeleted", 1) => (Action::CommentDeleted, id(payload, "deleted_by")?),
        ("UserFollowed", 1) => (Action::Followed, id(payload, "follower_id")?),
        ("UserUnfollowed", 1) => (Action::Unfollowed, id(payload, "follower_id")?),
        ("MessageSent", 1) => (Action::MessageSent, id(payload, "from_user_id")?),
        (event_type, _) if KNOWN.contains(&event_type) => return Err(Unknown::Version),
        _ => return Err(Unknown::Type),
    };
    Ok(Fact {
        hour: hour_of(event.occurred_at),
        actor,
        action,
    })
}

/// An id field: an integer (ids are below 2^53, exact in any JSON reader).
fn id(payload: &Map<String, Value>, field: &str) -> Result<i64, Unknown> {
    payload
        .get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| Unknown::Payload(format!("`{field}` is missing or not an integer")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, version: u32, aggregate_id: &str, payload: Value) -> PublishedEvent {
        PublishedEvent {
            event_id: format!("x/{aggregate_id}/1"),
            event_type: event_type.to_owned(),
            event_version: version,
            aggregate_type: "x".to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence: 1,
            occurred_at: "2026-12-06T10:59:59.999Z".parse().unwrap(),
            payload: payload.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn events_fall_in_the_hour_they_occurred_in() {
        let hour = |at: &str| hour_of(at.parse().unwrap()).to_rfc3339();
        assert_eq!(
            hour("2026-12-06T10:59:59.999Z"),
            "2026-12-06T10:00:00+00:00"
        );
        assert_eq!(hour("2026-12-06T11:00:00Z"), "2026-12-06T11:00:00+00:00");
        assert_eq!(hour("1969-12-31T23:30:00Z"), "1969-12-31T23:00:00+00:00");
    }

    #[test]
    fn each_event_type_names_who_acted() {
        let cases = [
            ("AccountOpened", "ann", json!({"user_id": 1}), 1),
            ("UserRegistered", "2", json!({"name": "bob"}), 2),
            (
                "VideoPublished",
                "9",
                json!({"author_id": 3, "title": "t"}),
                3,
            ),
            (
                "VideoLiked",
                "9:4",
                json!({"video_id": 9, "user_id": 4, "video_author_id": 3}),
                4,
            ),
            (
                "VideoUnliked",
                "9:5",
                json!({"video_id": 9, "user_id": 5, "video_author_id": 3}),
                5,
            ),
            (
                "CommentPosted",
                "7",
                json!({"video_id": 9, "user_id": 6}),
                6,
            ),
            (
                "CommentDeleted",
                "7",
                json!({"video_id": 9, "deleted_by": 3}),
                3,
            ),
            (
                "UserFollowed",
                "7:8",
                json!({"follower_id": 7, "followee_id": 8}),
                7,
            ),
            (
                "UserUnfollowed",
                "8:7",
                json!({"follower_id": 8, "followee_id": 7}),
                8,
            ),
            (
                "MessageSent",
                "1:2",
                json!({"from_user_id": 2, "to_user_id": 1}),
                2,
            ),
        ];
        for (event_type, aggregate_id, payload, actor) in cases {
            let fact = read(&event(event_type, 1, aggregate_id, payload)).unwrap();
            assert_eq!(fact.actor, actor, "{event_type}");
            assert_eq!(fact.hour.to_rfc3339(), "2026-12-06T10:00:00+00:00");
        }
    }

    #[test]
    fn unknown_types_versions_and_payloads_are_told_apart() {
        let liked = json!({"video_id": 9, "user_id": 4, "extra": "ignored"});
        assert_eq!(
            read(&event("VideoLiked", 1, "9:4", liked.clone()))
                .unwrap()
                .action,
            Action::Liked { video_id: 9 }
        );
        assert_eq!(
            read(&event("VideoLiked", 2, "9:4", liked)),
            Err(Unknown::Version)
        );
        assert_eq!(
            read(&event("VideoShared", 1, "9", json!({}))),
            Err(Unknown::Type)
        );
        assert!(matches!(
            read(&event(
                "VideoLiked",
                1,
                "9:4",
                json!({"video_id": "9", "user_id": 4})
            )),
            Err(Unknown::Payload(_))
        ));
    }

    #[test]
    fn messages_that_are_not_envelopes_are_kept_apart() {
        let at = || Position {
            topic: "t".into(),
            partition: 0,
            offset: 0,
        };
        assert!(matches!(
            Incoming::read(at(), Some(b"{")).message,
            Message::NotAnEvent(_)
        ));
        assert!(matches!(
            Incoming::read(at(), None).message,
            Message::NotAnEvent(_)
        ));
        let mut zero = event("VideoLiked", 1, "9:4", json!({}));
        zero.sequence = 0;
        assert!(matches!(
            Incoming::read(at(), Some(&zero.to_json())).message,
            Message::NotAnEvent(_)
        ));
    }
}
