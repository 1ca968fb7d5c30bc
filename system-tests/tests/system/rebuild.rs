//! An operator rebuilds the Redis read models from Postgres: clients see what they saw.

use serde_json::Value;
use system_tests::TestStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rebuilt_from_postgres_answers_as_before() {
    let stack = TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let video = stack.published(ann, &ann_token, "cats").await;
    let video_id = video["id"].to_string();
    for (path, params) in [
        (
            "/douyin/favorite/action/",
            vec![
                ("token", bob_token.as_str()),
                ("video_id", &video_id),
                ("action_type", "1"),
            ],
        ),
        (
            "/douyin/comment/action/",
            vec![
                ("token", &bob_token),
                ("video_id", &video_id),
                ("action_type", "1"),
                ("comment_text", "nice"),
            ],
        ),
        (
            "/douyin/relation/action/",
            vec![
                ("token", &bob_token),
                ("to_user_id", &ann.to_string()),
                ("action_type", "1"),
            ],
        ),
    ] {
        let reply = stack.command(path, &params).await;
        assert_eq!(reply["status_code"], 0, "{path}: {reply}");
    }
    let ann_id = ann.to_string();
    let reads = |token: &str| {
        let token = token.to_owned();
        let ann_id = ann_id.clone();
        let stack = &stack;
        async move {
            let mut seen: Vec<Value> = vec![];
            for path in ["/douyin/feed/", "/douyin/publish/list/", "/douyin/user/"] {
                seen.push(
                    stack
                        .query(path, &[("token", &token), ("user_id", &ann_id)])
                        .await,
                );
            }
            seen
        }
    };
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], |feed| {
            let video = &feed["video_list"][0];
            video["favorite_count"] == 1
                && video["comment_count"] == 1
                && video["is_favorite"] == true
                && video["author"]["follower_count"] == 1
                && video["author"]["is_follow"] == true
        })
        .await;
    let before = reads(&bob_token).await;

    // Redis loses everything under the stack's prefix.
    let mut redis = infra::redis_store::connect(&stack.settings.redis)
        .await
        .unwrap();
    let keys = infra::redis_store::Keys::new(&stack.settings.redis);
    let found: Vec<String> = redis::cmd("KEYS")
        .arg(keys.everything())
        .query_async(&mut redis)
        .await
        .unwrap();
    let () = redis::cmd("DEL")
        .arg(&found)
        .query_async(&mut redis)
        .await
        .unwrap();
    let empty = stack.query("/douyin/feed/", &[]).await;
    assert_eq!(empty["video_list"], serde_json::json!([]));

    let pool = infra::read_store::connect(&stack.settings.read_store)
        .await
        .unwrap();
    let rebuilt = projector::rebuild::rebuild_redis(&pool, &redis, &keys)
        .await
        .unwrap();
    assert_eq!(
        (
            rebuilt.users,
            rebuilt.videos,
            rebuilt.likes,
            rebuilt.follows
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(reads(&bob_token).await, before);

    // The projector carries on from the rebuilt state: an unlike counts once.
    let reply = stack
        .command(
            "/douyin/favorite/action/",
            &[
                ("token", &bob_token),
                ("video_id", &video_id),
                ("action_type", "2"),
            ],
        )
        .await;
    assert_eq!(reply["status_code"], 0);
    let bob_id = bob.to_string();
    stack
        .eventually(
            "/douyin/user/",
            &[("token", &bob_token), ("user_id", &bob_id)],
            |user| user["user"]["favorite_count"] == 0,
        )
        .await;
    let ann_card = stack.user(ann, &bob_token).await;
    assert_eq!(ann_card["user"]["total_favorited"], 0);
}
