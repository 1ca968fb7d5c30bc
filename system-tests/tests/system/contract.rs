//! The topics' contract as consumers meet it: what each message carries besides its value.

use std::time::Duration;

use infra::kafka::Topics;
use infra::testing::read_messages;
use system_tests::TestStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_carries_its_cloud_events_attributes_in_headers() {
    let stack = TestStack::spawn().await;
    let (user_id, _) = stack.registered("ann", "password1").await;
    let topic = Topics::new(&stack.settings.kafka).for_aggregate("user");
    let kafka = stack.settings.kafka.clone();
    let messages = tokio::task::spawn_blocking(move || {
        read_messages(
            &kafka,
            &topic,
            |events| !events.is_empty(),
            Duration::from_secs(10),
            Duration::ZERO,
        )
    })
    .await
    .unwrap();
    let [message] = messages.as_slice() else {
        panic!("one sign-up, one user event: {messages:?}");
    };
    let headers = &message.headers;
    let event = &message.event;
    assert_eq!(headers["ce_specversion"], "1.0");
    assert_eq!(headers["ce_id"], event.event_id);
    assert_eq!(headers["ce_id"], format!("user/{user_id}/1"));
    assert_eq!(headers["ce_type"], "douyin.UserRegistered.v1");
    assert_eq!(headers["ce_source"], "/douyin/user");
    assert_eq!(headers["ce_subject"], user_id.to_string());
    assert_eq!(
        serde_json::json!(headers["ce_time"]),
        serde_json::json!(event.occurred_at)
    );
    assert_eq!(headers["content-type"], "application/json");
}

/// Every event type, written through the API as the client writes.
async fn one_of_each_event(stack: &TestStack) {
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let (ann, bob) = (ann.to_string(), bob.to_string());
    let video = stack
        .published(ann.parse().unwrap(), &ann_token, "cats")
        .await;
    let video_id = video["id"].to_string();
    // Route, whose token, and the other parameters.
    type Write<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let writes: Vec<Write> = vec![
        (
            "/douyin/favorite/action/",
            &bob_token,
            vec![("video_id", &video_id), ("action_type", "1")],
        ),
        (
            "/douyin/favorite/action/",
            &bob_token,
            vec![("video_id", &video_id), ("action_type", "2")],
        ),
        (
            "/douyin/relation/action/",
            &bob_token,
            vec![("to_user_id", &ann), ("action_type", "1")],
        ),
        (
            "/douyin/relation/action/",
            &ann_token,
            vec![("to_user_id", &bob), ("action_type", "1")],
        ),
        (
            "/douyin/message/action/",
            &ann_token,
            vec![
                ("to_user_id", &bob),
                ("action_type", "1"),
                ("content", "hi"),
            ],
        ),
        (
            "/douyin/relation/action/",
            &ann_token,
            vec![("to_user_id", &bob), ("action_type", "2")],
        ),
    ];
    for (path, token, mut params) in writes {
        params.push(("token", token));
        let reply = stack.command(path, &params).await;
        assert_eq!(reply["status_code"], 0, "{path}: {reply}");
    }
    let posted = stack
        .command(
            "/douyin/comment/action/",
            &[
                ("token", &bob_token),
                ("video_id", &video_id),
                ("action_type", "1"),
                ("comment_text", "nice"),
            ],
        )
        .await;
    let comment_id = posted["comment"]["id"].to_string();
    let deleted = stack
        .command(
            "/douyin/comment/action/",
            &[
                ("token", &bob_token),
                ("video_id", &video_id),
                ("action_type", "2"),
                ("comment_id", &comment_id),
            ],
        )
        .await;
    assert_eq!(deleted["status_code"], 0, "{deleted}");
}

fn committed_schema(file: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(infra::contract::SCHEMA_DIR)
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{path:?} is committed"));
    serde_json::from_str(&text).expect("a schema is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_on_the_topics_matches_the_committed_schemas() {
    let stack = TestStack::spawn().await;
    one_of_each_event(&stack).await;

    let envelope = jsonschema::validator_for(&committed_schema(infra::contract::ENVELOPE_FILE))
        .expect("the envelope's schema is a schema");
    let topics = Topics::new(&stack.settings.kafka);
    let mut seen = std::collections::BTreeSet::new();
    for aggregate_type in domain::published::AGGREGATE_TYPES {
        let kafka = stack.settings.kafka.clone();
        let topic = topics.for_aggregate(aggregate_type);
        let expected = domain::published::EVENT_TYPES
            .iter()
            .filter(|event| event.aggregate_type == *aggregate_type)
            .count();
        let messages = tokio::task::spawn_blocking(move || {
            read_messages(
                &kafka,
                &topic,
                |events| {
                    let types: std::collections::BTreeSet<_> =
                        events.iter().map(|event| &event.event_type).collect();
                    types.len() >= expected
                },
                Duration::from_secs(10),
                Duration::ZERO,
            )
        })
        .await
        .unwrap();
        for message in messages {
            let event = &message.event;
            let value = serde_json::to_value(event).unwrap();
            let problems: Vec<String> = envelope
                .iter_errors(&value)
                .map(|error| error.to_string())
                .collect();
            assert!(problems.is_empty(), "{}: {problems:?}", event.event_id);
            let file = infra::contract::file_name(&event.event_type, event.event_version);
            let payload = jsonschema::validator_for(&committed_schema(&file)).unwrap();
            let payload_value = serde_json::Value::Object(event.payload.clone());
            let problems: Vec<String> = payload
                .iter_errors(&payload_value)
                .map(|error| error.to_string())
                .collect();
            assert!(
                problems.is_empty(),
                "{} against {file}: {problems:?}",
                event.event_id
            );
            seen.insert(event.event_type.clone());
        }
    }
    let every: std::collections::BTreeSet<String> = domain::published::EVENT_TYPES
        .iter()
        .map(|event| event.event_type.to_owned())
        .collect();
    assert_eq!(seen, every, "one of each event type was read back");
}
