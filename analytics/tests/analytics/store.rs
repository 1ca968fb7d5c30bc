//! The database alone (no broker): a batch delivered again, or to two consumers at once (as
//! during a rebalance), counts once.

use analytics::facts::{hour_of, Incoming, Position};
use analytics::{Outcome, Store};
use chrono::{TimeDelta, Utc};
use infra::testing::fresh_database;
use serde_json::json;

use crate::support::event;

fn likes(first_offset: i64) -> Vec<Incoming> {
    let at = Utc::now();
    (0..50)
        .map(|i| {
            let liked = event(
                "like",
                &format!("{}:{}", i % 5, i),
                1,
                "VideoLiked",
                at,
                json!({"video_id": i % 5, "user_id": i, "video_author_id": 1, "liked_at": 0}),
            );
            Incoming::read(
                Position {
                    topic: "likes".to_owned(),
                    partition: 0,
                    offset: first_offset + i,
                },
                Some(&liked.to_json()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delivered_twice_or_to_two_consumers_at_once_counts_once() {
    let url = fresh_database("analytics").await;
    let (one, two) = tokio::join!(Store::connect(&url), Store::connect(&url));
    let (one, two) = (one.unwrap(), two.unwrap());
    let batch = likes(0);

    let (a, b) = tokio::join!(one.apply(&batch), two.apply(&batch));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.applied + b.applied, 50, "{a:?} {b:?}");
    assert_eq!(a.repeats + b.repeats, 50, "{a:?} {b:?}");

    // The same events again at other offsets: a relay that published them twice.
    assert_eq!(
        one.apply(&likes(50)).await.unwrap(),
        Outcome {
            messages: 50,
            applied: 0,
            repeats: 50,
            skipped: 0,
        }
    );
    let hour = hour_of(Utc::now());
    let report = one
        .report(hour - TimeDelta::hours(1), hour + TimeDelta::hours(1))
        .await
        .unwrap();
    let counted: i64 = report.hours.iter().map(|h| h.likes).sum();
    assert_eq!(counted, 50);
    let active: i64 = report.hours.iter().map(|h| h.active_users).sum();
    assert_eq!(active, 50);
}
