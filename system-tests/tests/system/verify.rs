//! `make verify`: the read models checked against an independent fold of the events.

use std::time::Duration;

use system_tests::TestStack;
use verify::{Difference, Options, Store};

fn options() -> Options {
    Options {
        wait: Duration::from_secs(20),
        topics: true,
    }
}

#[tokio::test]
async fn read_models_that_hold_every_event_verify_clean_and_each_corruption_is_named() {
    let stack = TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let video = stack.published(ann, &ann_token, "cats").await;
    let video_id = video["id"].as_i64().unwrap();
    let video = video_id.to_string();
    let (ann_id, bob_id) = (ann.to_string(), bob.to_string());
    for (path, params) in [
        (
            "/douyin/favorite/action/",
            vec![
                ("token", bob_token.as_str()),
                ("video_id", &video),
                ("action_type", "1"),
            ],
        ),
        (
            "/douyin/comment/action/",
            vec![
                ("token", &bob_token),
                ("video_id", &video),
                ("action_type", "1"),
                ("comment_text", "nice"),
            ],
        ),
        (
            "/douyin/relation/action/",
            vec![
                ("token", &bob_token),
                ("to_user_id", &ann_id),
                ("action_type", "1"),
            ],
        ),
        (
            "/douyin/relation/action/",
            vec![
                ("token", &ann_token),
                ("to_user_id", &bob_id),
                ("action_type", "1"),
            ],
        ),
        (
            "/douyin/message/action/",
            vec![
                ("token", &ann_token),
                ("to_user_id", &bob_id),
                ("action_type", "1"),
                ("content", "hi"),
            ],
        ),
    ] {
        let reply = stack.command(path, &params).await;
        assert_eq!(reply["status_code"], 0, "{path}: {reply}");
    }

    // Straight after the writes: verify waits for the pipeline rather than report lag.
    let report = verify::verify(&stack.verify_settings(), &options())
        .await
        .unwrap();
    assert!(report.caught_up);
    assert_eq!(report.differences, [], "nothing differs");

    // A counter bumped twice in Redis, a follow lost from Postgres.
    let keys = infra::testing::current_keys(&stack.settings.redis).await;
    let mut redis = infra::redis_store::connect(&stack.settings.redis)
        .await
        .unwrap();
    let _: () = redis::cmd("HINCRBY")
        .arg(keys.video(video_id))
        .arg("favorite_count")
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    sqlx::query("DELETE FROM follows WHERE follower_id = $1")
        .bind(bob)
        .execute(&stack.read_store)
        .await
        .unwrap();

    let report = verify::verify(&stack.verify_settings(), &options())
        .await
        .unwrap();

    assert_eq!(
        report.differences,
        [
            Difference {
                store: Store::Postgres,
                entry: format!("follow (follower, followee) ({bob}, {ann})"),
                expected: "present".into(),
                found: "absent".into(),
            },
            Difference {
                store: Store::Redis,
                entry: format!("video {video_id} favorite_count"),
                expected: "1".into(),
                found: "2".into(),
            },
        ]
    );
}
