//! End to end: users write through the command API, its relay publishes the events, and
//! `analytics` (the library, then the binary) counts them from the topics.

use std::time::{Duration, Instant};

use analytics::facts::hour_of;
use analytics::store::{Hour, TopVideo};
use analytics::Store;
use chrono::{TimeDelta, Timelike, Utc};
use infra::settings::expose;
use serde_json::Value;
use system_tests::TestStack;

use crate::support::{catch_up, settings};

/// The numbers below are those of one hour: a test about to cross into the next waits for it.
async fn away_from_the_end_of_the_hour() {
    let now = Utc::now();
    let left = 3600 - i64::from(now.minute() * 60 + now.second());
    if left < 120 {
        tokio::time::sleep(Duration::from_secs(left.unsigned_abs() + 1)).await;
    }
}

fn id(value: &Value) -> String {
    value.as_i64().expect("an id is a JSON number").to_string()
}

async fn write(stack: &TestStack, path: &str, params: &[(&str, &str)]) -> Value {
    let reply = stack.command(path, params).await;
    assert_eq!(reply["status_code"], 0, "{path} {params:?}: {reply}");
    reply
}

async fn like(stack: &TestStack, token: &str, video: &str, action: &str) {
    write(
        stack,
        "/douyin/favorite/action/",
        &[
            ("token", token),
            ("video_id", video),
            ("action_type", action),
        ],
    )
    .await;
}

/// Until the relay has published every event (it deletes an outbox row once the broker has
/// it): what catching up then reads is the whole history.
async fn wait_until_published(stack: &TestStack) {
    let start = Instant::now();
    loop {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&stack.event_store)
            .await
            .expect("the event store answers");
        if queued == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{queued} events still unpublished after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_api_are_counted_in_their_hour() {
    away_from_the_end_of_the_hour().await;
    let hour = hour_of(Utc::now());
    let stack = &TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let (_, carol_token) = stack.registered("carol", "password1").await;
    // Signing up is a write: dave is active this hour though he does nothing else.
    stack.registered("dave", "password1").await;
    let first = id(&stack.published(ann, &ann_token, "first").await["id"]);
    let second = id(&stack.published(ann, &ann_token, "second").await["id"]);

    // The first video: two likes, one taken back. The second: two likes.
    like(stack, &bob_token, &first, "1").await;
    like(stack, &carol_token, &first, "1").await;
    like(stack, &carol_token, &first, "2").await;
    like(stack, &bob_token, &second, "1").await;
    like(stack, &carol_token, &second, "1").await;
    // Liking twice records nothing: not a like given.
    like(stack, &bob_token, &second, "1").await;
    let comment = write(
        stack,
        "/douyin/comment/action/",
        &[
            ("token", &bob_token),
            ("video_id", &first),
            ("action_type", "1"),
            ("comment_text", "nice"),
        ],
    )
    .await;
    // The video's author deletes it.
    write(
        stack,
        "/douyin/comment/action/",
        &[
            ("token", &ann_token),
            ("video_id", &first),
            ("action_type", "2"),
            ("comment_id", &id(&comment["comment"]["id"])),
        ],
    )
    .await;
    write(
        stack,
        "/douyin/relation/action/",
        &[
            ("token", &carol_token),
            ("to_user_id", &ann.to_string()),
            ("action_type", "1"),
        ],
    )
    .await;
    write(
        stack,
        "/douyin/message/action/",
        &[
            ("token", &ann_token),
            ("to_user_id", &bob.to_string()),
            ("action_type", "1"),
            ("content", "hello"),
        ],
    )
    .await;
    // Sign-ups make two events each (account and profile).
    assert_eq!(stack.count_events().await, 19);
    wait_until_published(stack).await;

    let settings = settings(stack.settings.kafka.clone()).await;
    let progress = catch_up(&settings).await;
    assert_eq!(
        (
            progress.outcome.messages,
            progress.outcome.applied,
            progress.outcome.skipped
        ),
        (19, 19, 0),
        "{progress:?}"
    );
    let store = Store::connect(expose(&settings.analytics.analytics_database_url))
        .await
        .expect("the analytics database answers");
    let report = store
        .report(hour - TimeDelta::hours(1), hour + TimeDelta::hours(1))
        .await
        .expect("the report is read");
    let number = |id: &str| id.parse::<i64>().unwrap();
    assert_eq!(
        report.hours,
        [Hour {
            hour,
            events: 19,
            videos_published: 2,
            likes: 4,
            unlikes: 1,
            net_likes: 3,
            comments_posted: 1,
            comments_deleted: 1,
            follows: 1,
            unfollows: 0,
            messages_sent: 1,
            sign_ups: 4,
            active_users: 4,
            top_videos: vec![
                TopVideo {
                    video_id: number(&second),
                    net_likes: 2,
                    likes: 2,
                    unlikes: 0,
                },
                TopVideo {
                    video_id: number(&first),
                    net_likes: 1,
                    likes: 2,
                    unlikes: 1,
                },
            ],
        }]
    );

    // The binary, run again: it reads nothing new, and prints the same numbers.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_analytics"))
        .args(["catch-up", "--hours", "2"])
        .env("KAFKA_BROKERS", &settings.kafka.kafka_brokers)
        .env("KAFKA_TOPIC_PREFIX", &settings.kafka.kafka_topic_prefix)
        .env(
            "ANALYTICS_DATABASE_URL",
            expose(&settings.analytics.analytics_database_url),
        )
        .env("ANALYTICS_GROUP", &settings.analytics.analytics_group)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let row: Vec<&str> = stdout
        .lines()
        .find(|line| line.starts_with(&hour.format("%Y-%m-%d %H:00").to_string()))
        .unwrap_or_else(|| panic!("the hour is printed: {stdout}"))
        .split_whitespace()
        .skip(2)
        .collect();
    assert_eq!(
        row,
        ["19", "2", "4", "1", "3", "1", "1", "1", "0", "1", "4", "4"],
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{second}: +2, {first}: +1")),
        "{stdout}"
    );
    assert_eq!(
        store
            .report(hour - TimeDelta::hours(1), hour + TimeDelta::hours(1))
            .await
            .expect("the report is read"),
        report,
        "nothing counted twice"
    );
}
