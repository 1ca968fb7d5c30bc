//! One write followed from the HTTP request to the read model, through the event store and
//! the broker, in one trace (an in-process exporter stands for the collector).

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use system_tests::TestStack;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == key)
        .map(|attribute| attribute.value.as_str().into_owned())
}

fn the_one<'a>(spans: &[&'a SpanData], name: &str, parent: SpanId) -> &'a SpanData {
    let found: Vec<&&SpanData> = spans
        .iter()
        .filter(|span| span.name == name && span.parent_span_id == parent)
        .collect();
    assert_eq!(found.len(), 1, "one {name:?} under {parent}: {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_like_is_one_trace_from_the_request_through_kafka_to_the_projector() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    assert!(
        infra::telemetry::init_with(Some(provider.clone())),
        "the test exporter is this process's first subscriber (run the test under nextest, a \
         process per test)"
    );
    let stack = TestStack::spawn().await;
    let password = "password-of-ann";
    let (ann, ann_token) = stack.registered("ann", password).await;
    let video = stack.published(ann, &ann_token, "cats").await;
    let video_id = video["id"].to_string();
    let liked = stack
        .command(
            "/douyin/favorite/action/",
            &[
                ("token", &ann_token),
                ("video_id", &video_id),
                ("action_type", "1"),
            ],
        )
        .await;
    assert_eq!(liked["status_code"], 0, "{liked}");
    stack
        .eventually(
            "/douyin/favorite/list/",
            &[("user_id", &ann.to_string()), ("token", &ann_token)],
            |reply| {
                reply["video_list"]
                    .as_array()
                    .is_some_and(|list| !list.is_empty())
            },
        )
        .await;
    // The projector's span ends once its batch is applied, just after the read shows it.
    let mut spans = Vec::new();
    for _ in 0..50 {
        provider.force_flush().unwrap();
        spans = exporter.get_finished_spans().unwrap();
        if spans.iter().any(|span| {
            span.name == "apply event"
                && attribute(span, "messaging.destination.name")
                    .is_some_and(|topic| topic.ends_with(".like"))
        }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let request = spans
        .iter()
        .find(|span| {
            span.name == "HTTP request"
                && attribute(span, "http.route").as_deref() == Some("/douyin/favorite/action/")
        })
        .expect("the like's request has a span");
    let trace: TraceId = request.span_context.trace_id();
    let in_trace: Vec<&SpanData> = spans
        .iter()
        .filter(|span| span.span_context.trace_id() == trace)
        .collect();
    let recorded = the_one(&in_trace, "record events", request.span_context.span_id());
    assert_eq!(
        attribute(recorded, "aggregate.type").as_deref(),
        Some("like")
    );
    let published = the_one(&in_trace, "publish event", recorded.span_context.span_id());
    assert!(attribute(published, "messaging.destination.name")
        .unwrap()
        .ends_with(".like"));
    let applied = the_one(&in_trace, "apply event", published.span_context.span_id());
    assert!(attribute(applied, "messaging.destination.name")
        .unwrap()
        .ends_with(".like"));

    // The trace as a collector would show it (`cargo nextest run ... --no-capture`).
    for (depth, span) in [request, recorded, published, applied].iter().enumerate() {
        eprintln!(
            "{:indent$}{} [{} .. {}] trace {} span {} {:?}",
            "",
            span.name,
            humantime(span.start_time),
            humantime(span.end_time),
            span.span_context.trace_id(),
            span.span_context.span_id(),
            span.attributes
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect::<Vec<_>>(),
            indent = depth * 2
        );
    }

    // No secret in anything exported: the token travels in the query string, the password
    // was in a sign-up's.
    for span in &spans {
        let exported = format!("{:?} {:?}", span.attributes, span.events);
        assert!(!exported.contains(&ann_token), "a token in {span:#?}");
        assert!(!exported.contains(password), "a password in {span:#?}");
    }
}

fn humantime(at: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%H:%M:%S%.6f")
        .to_string()
}
