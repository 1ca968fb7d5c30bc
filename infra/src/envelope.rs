//! The published form of an event: the JSON value of every Kafka message, and a public,
//! versioned contract (docs/events.md).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::upcast::Upcasters;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PublishedEvent {
    /// `<aggregate_type>/<aggregate_id>/<sequence>`: unique, so consumers can drop repeats.
    pub event_id: String,
    /// What happened (`VideoLiked`, ...): with `event_version`, names the payload's schema.
    pub event_type: String,
    /// The version of the event type's payload schema.
    #[schemars(range(min = 1))]
    pub event_version: u32,
    /// `account`, `user`, `video`, `like`, `comment`, `follow` or `conversation`; the topic is
    /// `<prefix><aggregate_type>`.
    pub aggregate_type: String,
    /// The aggregate's id, also the message's key.
    pub aggregate_id: String,
    /// Position of the event in its aggregate's history: 1, 2, 3, ... without gaps.
    #[schemars(range(min = 1))]
    pub sequence: i64,
    /// When the transaction that recorded the event began (RFC 3339, UTC).
    pub occurred_at: DateTime<Utc>,
    /// The event's fields (`<event_type>.v<event_version>.json`).
    pub payload: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("stored payload of {0} is not an object tagged with its event type")]
    UntaggedPayload(String),
    #[error("aggregate id of {0} is not what its aggregate type uses")]
    BadAggregateId(String),
    #[error("event version {0:?} is not a number")]
    BadVersion(String),
    #[error("{event_type} version {version} is not a version this build reads (it reads {known})")]
    UnknownVersion {
        event_type: String,
        version: u32,
        known: String,
    },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// An event as it sits in the event store.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// cqrs-es stores an event as `{"<EventType>": {fields}}`.
    pub payload: Value,
    pub recorded_at: DateTime<Utc>,
}

impl PublishedEvent {
    /// The published copy of a stored event: the payload unwrapped from its type tag, without
    /// the fields the domain keeps private.
    pub fn from_stored(stored: StoredEvent) -> Result<Self, EnvelopeError> {
        let event_id = format!(
            "{}/{}/{}",
            stored.aggregate_type, stored.aggregate_id, stored.sequence
        );
        let mut fields = match stored.payload {
            Value::Object(mut tagged) => match tagged.remove(&stored.event_type) {
                Some(Value::Object(fields)) if tagged.is_empty() => fields,
                _ => return Err(EnvelopeError::UntaggedPayload(event_id)),
            },
            _ => return Err(EnvelopeError::UntaggedPayload(event_id)),
        };
        fields.retain(|field, _| {
            !domain::published::is_secret(&stored.aggregate_type, &stored.event_type, field)
        });
        let event_version = stored
            .event_version
            .parse()
            .map_err(|_| EnvelopeError::BadVersion(stored.event_version.clone()))?;
        Ok(Self {
            event_id,
            event_type: stored.event_type,
            event_version,
            aggregate_type: stored.aggregate_type,
            aggregate_id: stored.aggregate_id,
            sequence: stored.sequence,
            occurred_at: stored.recorded_at,
            payload: fields,
        })
    }

    /// The message's CloudEvents attributes, in Kafka's binary mode: each a header
    /// (`ce_<attribute>`), the value left as it is (docs/events/asyncapi.yaml).
    pub fn cloud_event_headers(&self) -> [(&'static str, String); 7] {
        [
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", self.event_id.clone()),
            ("ce_source", format!("/douyin/{}", self.aggregate_type)),
            (
                "ce_type",
                format!("douyin.{}.v{}", self.event_type, self.event_version),
            ),
            ("ce_subject", self.aggregate_id.clone()),
            // Written as the envelope's `occurred_at` is (chrono's serde form).
            (
                "ce_time",
                self.occurred_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
            ("content-type", "application/json".to_owned()),
        ]
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope of JSON values always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The domain event carried, for consumers that share our event types. An event of a
    /// version other than the one this build writes is refused, even when its fields happen
    /// to fit: a new version may mean something else.
    ///
    /// An event of an older version is first brought up to the current one by this build's
    /// upcasters ([`crate::upcast`]), so that old events still replay.
    pub fn domain_event<E: DomainEvent>(&self) -> Result<E, EnvelopeError> {
        self.domain_event_with(&Upcasters::CURRENT)
    }

    /// As [`Self::domain_event`], with the given upcasters.
    pub fn domain_event_with<E: DomainEvent>(
        &self,
        upcasters: &Upcasters,
    ) -> Result<E, EnvelopeError> {
        let (version, payload) =
            upcasters.upcast(&self.event_type, self.event_version, self.payload.clone());
        let mut tagged = Map::new();
        tagged.insert(self.event_type.clone(), Value::Object(payload));
        let event: E = serde_json::from_value(Value::Object(tagged))?;
        let known = event.event_version();
        if known != version.to_string() {
            return Err(EnvelopeError::UnknownVersion {
                event_type: self.event_type.clone(),
                version: self.event_version,
                known,
            });
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::user::{UserEvent, UserName};
    use serde_json::json;

    fn stored(aggregate_type: &str, event_type: &str, payload: Value) -> StoredEvent {
        StoredEvent {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: "7".to_owned(),
            sequence: 1,
            event_type: event_type.to_owned(),
            event_version: "1".to_owned(),
            payload,
            recorded_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    /// A v2 of `VideoLiked` as a later build might write it (the liker renamed: the upcaster
    /// is `crate::upcast::example::RENAMED_LIKER`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum LaterLikeEvent {
        VideoLiked { video_id: i64, liker_id: i64 },
    }

    impl DomainEvent for LaterLikeEvent {
        fn event_type(&self) -> String {
            "VideoLiked".into()
        }

        fn event_version(&self) -> String {
            "2".into()
        }
    }

    const RENAMED_LIKER: &[crate::upcast::Upcaster] = &[crate::upcast::example::RENAMED_LIKER];

    #[test]
    fn an_event_of_an_older_version_replays_through_its_upcaster() {
        let v1 = PublishedEvent::from_stored(stored(
            "like",
            "VideoLiked",
            json!({"VideoLiked": {"video_id": 3, "user_id": 7}}),
        ))
        .unwrap();
        let event: LaterLikeEvent = v1
            .domain_event_with(&Upcasters::new(RENAMED_LIKER))
            .expect("the v1 event reads as v2");
        assert_eq!(
            event,
            LaterLikeEvent::VideoLiked {
                video_id: 3,
                liker_id: 7
            }
        );
        // Without the upcaster, a build that writes v2 refuses v1 rather than misread it.
        assert!(matches!(
            v1.domain_event_with::<LaterLikeEvent>(&Upcasters::new(&[])),
            Err(EnvelopeError::Json(_) | EnvelopeError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn cloud_event_attributes_name_the_event_and_when_it_happened() {
        let event = PublishedEvent::from_stored(stored(
            "user",
            "UserRegistered",
            json!({"UserRegistered": {"name": "ann"}}),
        ))
        .unwrap();
        let headers: std::collections::HashMap<_, _> =
            event.cloud_event_headers().into_iter().collect();
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_id"], "user/7/1");
        assert_eq!(headers["ce_source"], "/douyin/user");
        assert_eq!(headers["ce_type"], "douyin.UserRegistered.v1");
        assert_eq!(headers["ce_subject"], "7");
        assert_eq!(headers["ce_time"], "2023-11-14T22:13:20Z");
        assert_eq!(json!(event.occurred_at), json!(headers["ce_time"]));
        assert_eq!(headers["content-type"], "application/json");
    }

    #[test]
    fn the_envelope_has_the_documented_fields() {
        let event = PublishedEvent::from_stored(stored(
            "user",
            "UserRegistered",
            json!({"UserRegistered": {"name": "ann"}}),
        ))
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&event.to_json()).unwrap(),
            json!({
                "event_id": "user/7/1",
                "event_type": "UserRegistered",
                "event_version": 1,
                "aggregate_type": "user",
                "aggregate_id": "7",
                "sequence": 1,
                "occurred_at": "2023-11-14T22:13:20Z",
                "payload": {"name": "ann"}
            })
        );
        let decoded: UserEvent = event.domain_event().unwrap();
        assert_eq!(
            decoded,
            UserEvent::UserRegistered {
                name: UserName::parse("ann").unwrap()
            }
        );
        let newer = PublishedEvent {
            event_version: 2,
            ..event
        };
        assert!(matches!(
            newer.domain_event::<UserEvent>(),
            Err(EnvelopeError::UnknownVersion { version: 2, .. })
        ));
    }

    #[test]
    fn secrets_are_not_published() {
        let event = PublishedEvent::from_stored(stored(
            "account",
            "AccountOpened",
            json!({"AccountOpened": {"user_id": 7, "password_hash": "$argon2id$..."}}),
        ))
        .unwrap();
        assert_eq!(Value::Object(event.payload), json!({"user_id": 7}));
    }

    #[test]
    fn a_payload_without_its_type_tag_is_an_error() {
        let result =
            PublishedEvent::from_stored(stored("user", "UserRegistered", json!({"name": "x"})));
        assert!(matches!(result, Err(EnvelopeError::UntaggedPayload(_))));
    }
}
