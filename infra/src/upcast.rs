//! How an event type gets a new version while its old events stay readable.
//!
//! Stored events are never rewritten: an event recorded as `VideoLiked` v1 stays v1 in the
//! event store and on the topics. When a payload changes shape, the event type's
//! `event_version` goes up, and an [`Upcaster`] turns a payload of the old version into the
//! new one's, step by step (v1 → v2 → v3). The readers that decode stored events into the
//! domain's types go through the same list, [`UPCASTERS`]:
//!
//! - the aggregates, loading their history from the event store (cqrs-es applies them as it
//!   deserialises; see [`Upcasters::for_event_store`]);
//! - the projector and `make rebuild`, decoding a published event
//!   ([`crate::envelope::PublishedEvent::domain_event`]);
//!
//! so an old event replays as if it had been written at the current version. `make verify`
//! does not: it folds the stored JSON with plain SQL of its own (verify/src/fold.rs), on
//! purpose sharing nothing with the projector, and is taught each new version by hand.
//! docs/events.md ("A new version of an event") lists the steps.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::{Map, Value};

/// Turns a payload of `event_type` at version `from` into its shape at `from + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    pub from: u32,
    pub upcast: fn(Map<String, Value>) -> Map<String, Value>,
}

/// Every upcaster of this build. None yet: every event type is at its first version.
pub const UPCASTERS: &[Upcaster] = &[];

/// A list of upcasters, applied as a chain.
#[derive(Debug, Clone, Copy)]
pub struct Upcasters(&'static [Upcaster]);

impl Upcasters {
    /// This build's.
    pub const CURRENT: Self = Self(UPCASTERS);

    pub const fn new(upcasters: &'static [Upcaster]) -> Self {
        Self(upcasters)
    }

    /// `payload` of `event_type` at `version`, brought up to the newest version the upcasters
    /// reach, and that version.
    pub fn upcast(
        &self,
        event_type: &str,
        mut version: u32,
        mut payload: Map<String, Value>,
    ) -> (u32, Map<String, Value>) {
        while let Some(step) = self
            .0
            .iter()
            .find(|step| step.event_type == event_type && step.from == version)
        {
            payload = (step.upcast)(payload);
            version += 1;
        }
        (version, payload)
    }

    /// The same steps for cqrs-es's event repositories, which try each upcaster once, in
    /// order: sorted by version, a chain goes all the way.
    pub fn for_event_store(&self) -> Vec<Box<dyn EventUpcaster>> {
        let mut steps = self.0.to_vec();
        steps.sort_by_key(|step| (step.event_type, step.from));
        steps
            .into_iter()
            .map(|step| Box::new(step) as Box<dyn EventUpcaster>)
            .collect()
    }
}

/// cqrs-es stores an event as `{"<EventType>": {fields}}`, its version as a string.
impl EventUpcaster for Upcaster {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == self.event_type && event_version == self.from.to_string()
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Some(Value::Object(fields)) = event.payload.get_mut(self.event_type) {
            *fields = (self.upcast)(std::mem::take(fields));
        }
        event.event_version = (self.from + 1).to_string();
        event
    }
}

/// The worked example of docs/events.md, for the tests: suppose `VideoLiked` v2 named the
/// liker `liker_id` where v1 said `user_id`, and v3 added where the like came from.
#[cfg(test)]
pub(crate) mod example {
    use serde_json::json;

    use super::Upcaster;

    pub const RENAMED_LIKER: Upcaster = Upcaster {
        event_type: "VideoLiked",
        from: 1,
        upcast: |mut payload| {
            if let Some(liker) = payload.remove("user_id") {
                payload.insert("liker_id".into(), liker);
            }
            payload
        },
    };

    pub const SOURCE_ADDED: Upcaster = Upcaster {
        event_type: "VideoLiked",
        from: 2,
        upcast: |mut payload| {
            payload.insert("source".into(), json!("unknown"));
            payload
        },
    };

    /// Out of order on purpose: a chain is found by version, not by place.
    pub const EXAMPLE: &[Upcaster] = &[SOURCE_ADDED, RENAMED_LIKER];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::example::EXAMPLE;

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(fields) => fields,
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_old_payload_goes_up_every_step_to_the_newest_version() {
        let v1 = fields(json!({"video_id": 3, "user_id": 7, "video_author_id": 9, "liked_at": 1}));
        let (version, payload) = Upcasters::new(EXAMPLE).upcast("VideoLiked", 1, v1);
        assert_eq!(version, 3);
        assert_eq!(
            Value::Object(payload),
            json!({"video_id": 3, "liker_id": 7, "video_author_id": 9, "liked_at": 1, "source": "unknown"})
        );
    }

    #[test]
    fn a_current_payload_and_other_event_types_are_left_alone() {
        let upcasters = Upcasters::new(EXAMPLE);
        let v3 = fields(json!({"liker_id": 7, "source": "feed"}));
        assert_eq!(upcasters.upcast("VideoLiked", 3, v3.clone()), (3, v3));
        let other = fields(json!({"user_id": 7}));
        assert_eq!(
            upcasters.upcast("VideoUnliked", 1, other.clone()),
            (1, other)
        );
    }

    #[test]
    fn the_event_store_applies_the_same_steps_as_it_loads() {
        let mut stored = SerializedEvent {
            aggregate_id: "3:7".into(),
            sequence: 1,
            aggregate_type: "like".into(),
            event_type: "VideoLiked".into(),
            event_version: "1".into(),
            payload: json!({"VideoLiked": {"video_id": 3, "user_id": 7}}),
            metadata: json!({}),
        };
        // As cqrs-es does: each upcaster, in the order given, if it applies.
        for step in Upcasters::new(EXAMPLE).for_event_store() {
            if step.can_upcast(&stored.event_type, &stored.event_version) {
                stored = step.upcast(stored);
            }
        }
        assert_eq!(stored.event_version, "3");
        assert_eq!(
            stored.payload,
            json!({"VideoLiked": {"video_id": 3, "liker_id": 7, "source": "unknown"}})
        );
    }

    #[test]
    fn this_build_has_no_upcaster_yet_and_every_event_type_is_at_version_one() {
        assert!(UPCASTERS.is_empty());
        assert!(domain::published::EVENT_TYPES
            .iter()
            .all(|event| event.version == 1));
    }
}
