//! The topics' contract in a form machines read: one JSON Schema per published event type and
//! version, and one of the envelope, made from the Rust types themselves (schemars) and
//! committed under `docs/events/schemas/`. A test keeps the committed files equal to what this
//! build publishes, so that a payload cannot change shape without a new version and a new
//! file; docs/events/asyncapi.yaml refers to them.

use std::collections::BTreeMap;

use domain::published::{EventType, EVENT_TYPES};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};

use crate::envelope::PublishedEvent;

/// Where the schemas are committed, from the workspace's root.
pub const SCHEMA_DIR: &str = "docs/events/schemas";

/// The envelope's schema file.
pub const ENVELOPE_FILE: &str = "envelope.json";

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("event type {0} is published but not listed in domain::published::EVENT_TYPES")]
    Unlisted(String),
    #[error("event type {0} is listed in domain::published::EVENT_TYPES but no event enum has it")]
    Unknown(String),
    #[error("the schema of {0} is not an externally tagged enum of objects")]
    NotTagged(&'static str),
}

/// The schema of one event type's payload, at the version this build writes.
#[derive(Debug, Clone)]
pub struct PayloadSchema {
    pub event: EventType,
    pub schema: Value,
}

impl PayloadSchema {
    /// `<event_type>.v<event_version>.json`
    pub fn file_name(&self) -> String {
        file_name(self.event.event_type, self.event.version)
    }
}

pub fn file_name(event_type: &str, version: u32) -> String {
    format!("{event_type}.v{version}.json")
}

/// Every published event type's payload schema, in the order of [`EVENT_TYPES`].
pub fn payload_schemas() -> Result<Vec<PayloadSchema>, ContractError> {
    let mut payloads = BTreeMap::new();
    variants::<domain::account::AccountEvent>(&mut payloads)?;
    variants::<domain::user::UserEvent>(&mut payloads)?;
    variants::<domain::video::VideoEvent>(&mut payloads)?;
    variants::<domain::like::LikeEvent>(&mut payloads)?;
    variants::<domain::comment::CommentEvent>(&mut payloads)?;
    variants::<domain::follow::FollowEvent>(&mut payloads)?;
    variants::<domain::conversation::ConversationEvent>(&mut payloads)?;
    let schemas = EVENT_TYPES
        .iter()
        .map(|event| {
            let payload = payloads
                .remove(event.event_type)
                .ok_or_else(|| ContractError::Unknown(event.event_type.to_owned()))?;
            Ok(PayloadSchema {
                event: *event,
                schema: payload_document(event, payload),
            })
        })
        .collect::<Result<Vec<_>, ContractError>>()?;
    match payloads.into_keys().next() {
        Some(unlisted) => Err(ContractError::Unlisted(unlisted)),
        None => Ok(schemas),
    }
}

/// The envelope's schema: every message's value (docs/events.md, "The envelope").
pub fn envelope_schema() -> Value {
    let mut schema = generator()
        .into_root_schema_for::<PublishedEvent>()
        .to_value();
    let object = schema
        .as_object_mut()
        .expect("a struct's schema is an object");
    object.insert("$schema".into(), json!(DRAFT));
    object.insert("$id".into(), json!(ENVELOPE_FILE));
    object.insert("title".into(), json!("Event envelope"));
    object.insert(
        "description".into(),
        json!(
            "The value of every message on the event topics. `payload` follows the schema \
             named by `event_type` and `event_version`: <event_type>.v<event_version>.json."
        ),
    );
    schema
}

/// Everything inlined: each file stands alone, for consumers that read one.
fn generator() -> schemars::SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator()
}

/// The payload schema of each variant of an event enum, by event type. cqrs-es stores an
/// event as `{"<EventType>": {fields}}`, which is serde's external tagging: each variant's
/// schema is the one property of an object.
fn variants<E: JsonSchema>(into: &mut BTreeMap<String, Value>) -> Result<(), ContractError> {
    let schema = generator().into_root_schema_for::<E>().to_value();
    let tagged = match schema.get("oneOf") {
        Some(Value::Array(variants)) => variants.clone(),
        // An enum of one variant is that variant's object.
        _ => vec![schema],
    };
    for variant in tagged {
        let properties = variant
            .get("properties")
            .and_then(Value::as_object)
            .filter(|properties| properties.len() == 1)
            .ok_or(ContractError::NotTagged(std::any::type_name::<E>()))?;
        let (event_type, payload) = properties.iter().next().expect("one property");
        into.insert(event_type.clone(), payload.clone());
    }
    Ok(())
}

fn payload_document(event: &EventType, payload: Value) -> Value {
    let mut document = json!({
        "$schema": DRAFT,
        "$id": file_name(event.event_type, event.version),
        "title": format!("{} v{}", event.event_type, event.version),
        "description": format!(
            "The payload of {} events (event_version {}) on the {} topic.",
            event.event_type, event.version, event.aggregate_type
        ),
    });
    let object = document.as_object_mut().expect("an object");
    if let Value::Object(fields) = payload {
        object.extend(fields);
    }
    // What is not in the schema is not published: a field that appears (a secret let out)
    // fails validation instead of passing unseen.
    object.insert("additionalProperties".into(), json!(false));
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_event_type_has_a_schema_and_every_published_one_is_listed() {
        let schemas = payload_schemas().expect("the enums and the list agree");
        assert_eq!(schemas.len(), EVENT_TYPES.len());
    }

    #[test]
    fn the_password_hash_is_not_in_the_published_schema() {
        let schemas = payload_schemas().unwrap();
        let opened = schemas
            .iter()
            .find(|schema| schema.event.event_type == "AccountOpened")
            .unwrap();
        assert_eq!(opened.schema["properties"].as_object().unwrap().len(), 1);
        assert!(opened.schema["properties"]["user_id"].is_object());
        assert_eq!(opened.schema["additionalProperties"], false);
    }
}
