//! The committed contract (docs/events/) is what this build publishes.
//!
//! After changing a payload: give the event type a new version (its `event_version` and
//! `domain::published::EVENT_TYPES`), keep the old version's file (old events are still on
//! the topics and in the store), then write the new file with
//! `UPDATE_EVENT_SCHEMAS=1 cargo test -p infra --test contract`.

use std::path::{Path, PathBuf};

use infra::contract::{envelope_schema, payload_schemas, ENVELOPE_FILE, SCHEMA_DIR};
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pretty(schema: &Value) -> String {
    serde_json::to_string_pretty(schema).unwrap() + "\n"
}

/// Compares the committed file with `schema`; writes it instead when asked to.
fn check(file: &str, schema: &Value) -> Option<String> {
    let path = workspace().join(SCHEMA_DIR).join(file);
    if std::env::var_os("UPDATE_EVENT_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pretty(schema)).unwrap();
        return None;
    }
    match std::fs::read_to_string(&path) {
        Err(_) => Some(format!("{file}: no such file")),
        Ok(text) => {
            let committed: Value = serde_json::from_str(&text).expect("a committed schema is JSON");
            (committed != *schema)
                .then(|| format!("{file}: differs from what this build publishes"))
        }
    }
}

#[test]
fn every_payload_and_the_envelope_match_their_committed_schema() {
    let mut problems: Vec<String> = payload_schemas()
        .expect("the event enums and the list agree")
        .iter()
        .filter_map(|payload| check(&payload.file_name(), &payload.schema))
        .collect();
    problems.extend(check(ENVELOPE_FILE, &envelope_schema()));
    assert!(
        problems.is_empty(),
        "the published shape changed without a new schema file:\n  {}\n\
         A changed payload needs a new event_version and a file of its own beside the old one's; \
         then UPDATE_EVENT_SCHEMAS=1 cargo test -p infra --test contract writes it.",
        problems.join("\n  ")
    );
}

#[test]
fn a_payload_with_a_field_the_schema_does_not_know_is_refused() {
    let schemas = payload_schemas().unwrap();
    let opened = schemas
        .iter()
        .find(|payload| payload.event.event_type == "AccountOpened")
        .unwrap();
    let validator = jsonschema::validator_for(&opened.schema).unwrap();
    assert!(validator.is_valid(&serde_json::json!({"user_id": 7})));
    assert!(
        !validator.is_valid(&serde_json::json!({"user_id": 7, "password_hash": "$argon2id$..."}))
    );
    assert!(!validator.is_valid(&serde_json::json!({"user_id": 0})));
}

fn asyncapi() -> Value {
    let path = workspace().join("docs/events/asyncapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/events/asyncapi.yaml is there");
    serde_saphyr::from_str(&text).expect("the AsyncAPI document is YAML")
}

/// Every `$ref` under `value`, with where it was found.
fn references<'a>(value: &'a Value, at: String, into: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                match (name.as_str(), field) {
                    ("$ref", Value::String(target)) => into.push((at.clone(), target)),
                    _ => references(field, format!("{at}/{name}"), into),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                references(item, format!("{at}/{i}"), into);
            }
        }
        _ => {}
    }
}

#[test]
fn the_asyncapi_document_parses_and_every_reference_resolves() {
    let document = asyncapi();
    assert_eq!(document["asyncapi"], "3.0.0");
    let mut found = Vec::new();
    references(&document, String::new(), &mut found);
    assert!(found.len() > 40, "{found:?}");
    let dir = workspace().join("docs/events");
    let unresolved: Vec<String> = found
        .iter()
        .filter(|(_, target)| match target.strip_prefix('#') {
            Some(pointer) => document.pointer(pointer).is_none(),
            None => {
                let (file, pointer) = target.split_once('#').unwrap_or((target, ""));
                match std::fs::read_to_string(dir.join(file)) {
                    Err(_) => true,
                    Ok(text) => serde_json::from_str::<Value>(&text)
                        .map(|schema| schema.pointer(pointer).is_none())
                        .unwrap_or(true),
                }
            }
        })
        .map(|(at, target)| format!("{at}: {target}"))
        .collect();
    assert!(
        unresolved.is_empty(),
        "unresolved references:\n{}",
        unresolved.join("\n")
    );
}

#[test]
fn the_asyncapi_document_describes_every_topic_and_event_as_published() {
    let document = asyncapi();
    for aggregate_type in domain::published::AGGREGATE_TYPES {
        assert_eq!(
            document["channels"][aggregate_type]["address"],
            format!("douyin.{aggregate_type}"),
            "the {aggregate_type} topic"
        );
    }
    for payload in payload_schemas().unwrap() {
        let event = payload.event;
        let message = &document["components"]["messages"][event.event_type];
        assert_eq!(message["name"], event.event_type, "{}", event.event_type);
        let channel = &document["channels"][event.aggregate_type]["messages"][event.event_type];
        assert_eq!(
            channel["$ref"],
            format!("#/components/messages/{}", event.event_type)
        );
        let schema = message["payload"].to_string();
        assert!(
            schema.contains(&format!("./schemas/{}", payload.file_name())),
            "{} refers to its payload schema: {schema}",
            event.event_type
        );
        // The headers documented are those the relay writes.
        let headers = &message["headers"]["allOf"][1]["properties"];
        let published = sample(event.aggregate_type, event.event_type, event.version);
        let written: std::collections::HashMap<_, _> =
            published.cloud_event_headers().into_iter().collect();
        assert_eq!(headers["ce_type"]["const"], written["ce_type"]);
        assert_eq!(headers["ce_source"]["const"], written["ce_source"]);
    }
}

fn sample(aggregate_type: &str, event_type: &str, version: u32) -> infra::envelope::PublishedEvent {
    let mut event = infra::testing::published_event(
        aggregate_type,
        "1",
        1,
        event_type,
        chrono::Utc::now(),
        serde_json::json!({}),
    );
    event.event_version = version;
    event
}

#[test]
fn every_committed_schema_file_is_a_schema_of_a_known_event_type() {
    let dir = workspace().join(SCHEMA_DIR);
    let known: Vec<&str> = domain::published::EVENT_TYPES
        .iter()
        .map(|event| event.event_type)
        .collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(&name)).unwrap())
                .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(
            jsonschema::validator_for(&schema).is_ok(),
            "{name} is not a schema"
        );
        if name == ENVELOPE_FILE {
            continue;
        }
        // Old versions stay (their events are still in the store and on the topics).
        let (event_type, version) = name
            .strip_suffix(".json")
            .and_then(|stem| stem.rsplit_once(".v"))
            .unwrap_or_else(|| panic!("{name} is not <event_type>.v<version>.json"));
        assert!(known.contains(&event_type), "{name}: no such event type");
        assert!(version.parse::<u32>().is_ok_and(|v| v >= 1), "{name}");
    }
}
