//! What an operator sees: each service's `/metrics` and `/readyz` on its own address.

use std::time::{Duration, Instant};

use http_api::rate_limit::Rate;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use system_tests::TestStack;

async fn get(stack: &TestStack, url: String) -> (u16, String) {
    let answer = stack
        .http
        .get(url)
        .send()
        .await
        .expect("the service answers");
    let status = answer.status().as_u16();
    (status, answer.text().await.expect("a text body"))
}

/// The service's metrics, once every series in `wanted` shows (15 s at most: the consumer's
/// lag comes with librdkafka's statistics, every 5 s).
async fn metrics_showing(stack: &TestStack, base: &str, wanted: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let (status, text) = get(stack, format!("{base}/metrics")).await;
        assert_eq!(status, 200, "{text}");
        let missing: Vec<&&str> = wanted
            .iter()
            .filter(|series| !text.contains(**series))
            .collect();
        if missing.is_empty() {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{base}/metrics never showed {missing:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn readiness(stack: &TestStack, base: &str) -> (u16, Value) {
    let (status, text) = get(stack, format!("{base}/readyz")).await;
    (
        status,
        serde_json::from_str(&text).expect("readiness is JSON"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_shows_its_requests_pipeline_and_readiness() {
    let stack = TestStack::spawn_with(|settings| {
        settings.rate_limits.rate_limit = "on".into();
        settings.rate_limits.rate_limit_register = Rate::new(2, Duration::from_secs(3600));
    })
    .await;
    let (ann, token) = stack.registered("ann", "password1").await;
    stack.registered("bob", "password1").await;
    // Past the rate of sign-ups: a refusal, answered HTTP 200 with status_code 429.
    let refused = stack.register("cat", "password1").await;
    assert_eq!(refused["status_code"], 429, "{refused}");
    // A refusal of the client's input: HTTP 200 with status_code 400.
    let refused = stack
        .command(
            "/douyin/favorite/action/",
            &[("token", &token), ("video_id", "1"), ("action_type", "9")],
        )
        .await;
    assert_eq!(refused["status_code"], 400, "{refused}");
    stack.wait_for_user(ann, &token).await;
    stack.query("/douyin/feed/", &[]).await;

    let command = metrics_showing(
        &stack,
        &stack.command_url,
        &[
            r#"http_requests_total{method="POST",route="/douyin/user/register/",http_status="200",status_code="0"} 2"#,
            r#"route="/douyin/user/register/",http_status="200",status_code="429"} 1"#,
            r#"route="/douyin/favorite/action/",http_status="200",status_code="400"} 1"#,
            r#"http_request_duration_seconds_bucket{method="POST",route="/douyin/user/register/",le="#,
            r#"rate_limit_refusals_total{limit="register"} 1"#,
            "relay_published_events_total ",
            "outbox_backlog_events 0",
            "outbox_oldest_event_age_seconds 0",
        ],
    )
    .await;
    assert!(!command.contains(&token), "a token in the metrics");

    metrics_showing(
        &stack,
        &stack.query_url,
        &[
            r#"http_requests_total{method="GET",route="/douyin/user/",http_status="200",status_code="0"}"#,
            r#"http_requests_total{method="GET",route="/douyin/feed/",http_status="200",status_code="0"} 1"#,
            r#"http_request_duration_seconds_bucket{method="GET",route="/douyin/feed/",le="#,
        ],
    )
    .await;

    metrics_showing(
        &stack,
        &stack.projector_url,
        &[
            r#"projector_events_total{outcome="applied"}"#,
            "projector_batch_events_bucket{le=",
            "projector_apply_duration_seconds_bucket{le=",
            "projector_dead_letters 0",
            "projector_held_back_aggregates 0",
            "projector_rebuild_in_progress 0",
            r#"projector_consumer_lag_messages{topic=""#,
        ],
    )
    .await;

    for base in [&stack.command_url, &stack.query_url, &stack.projector_url] {
        let (status, body) = readiness(&stack, base).await;
        assert_eq!(
            (status, &body["ready"]),
            (200, &Value::Bool(true)),
            "{base}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_event_store_refuses_connections_and_says_why() {
    let stack = TestStack::spawn().await;
    let (status, _) = readiness(&stack, &stack.command_url).await;
    assert_eq!(status, 200);

    // The event store's database stops taking connections, and its open ones are cut.
    let url = infra::settings::expose(&stack.settings.event_store.database_url).to_owned();
    let (server, database) = url.rsplit_once('/').unwrap();
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    let set_connections =
        |allowed: bool| format!(r#"ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {allowed}"#);
    sqlx::raw_sql(&set_connections(false))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(database)
        .execute(&mut admin)
        .await
        .unwrap();

    // A cut connection's server process ends a moment after it is told to.
    let started = Instant::now();
    let (status, body) = loop {
        let (status, body) = readiness(&stack, &stack.command_url).await;
        if status != 200 || started.elapsed() > Duration::from_secs(10) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"][0]["dependency"], "postgres", "{body}");
    assert!(
        body["checks"][0]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    // Liveness is another question: the process is alive and answers.
    let (status, _) = get(&stack, format!("{}/healthz", stack.command_url)).await;
    assert_eq!(status, 200);

    sqlx::raw_sql(&set_connections(true))
        .execute(&mut admin)
        .await
        .unwrap();
    let start = Instant::now();
    while readiness(&stack, &stack.command_url).await.0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_is_not_ready_without_its_broker_or_redis() {
    let stack = TestStack::spawn().await;
    let mut settings = stack.projector_settings();
    // Nothing listens on port 1.
    settings.redis.redis_url = infra::settings::secret("redis://127.0.0.1:1");
    settings.kafka.kafka_brokers = "127.0.0.1:1".into();
    let operations = std::sync::Arc::new(
        projector::operations::Operations::new(&settings, Default::default())
            .await
            .expect("its read store answers"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(operations.serve(listener, stop.clone()));

    let (status, body) = readiness(&stack, &base).await;
    assert_eq!(status, 503, "{body}");
    let failed: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check.get("error").is_some())
        .map(|check| check["dependency"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["broker", "redis"], "{body}");
    stop.cancel();
}
