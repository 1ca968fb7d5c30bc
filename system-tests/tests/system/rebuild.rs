//! The Redis read models are rebuilt from Postgres, by an operator or by the projector when
//! Redis lost its data: clients see what they saw, and later writes count once.

use serde_json::Value;
use system_tests::TestStack;

struct History {
    stack: TestStack,
    ann: i64,
    bob: i64,
    bob_token: String,
    video_id: String,
}

/// Ann publishes a video; Bob likes it, comments on it and follows Ann.
async fn history() -> History {
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
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], |feed| {
            let video = &feed["video_list"][0];
            video["favorite_count"] == 1
                && video["comment_count"] == 1
                && video["is_favorite"] == true
                && video["author"]["follower_count"] == 1
                && video["author"]["is_follow"] == true
                && video["author"]["total_favorited"] == 1
        })
        .await;
    History {
        stack,
        ann,
        bob,
        bob_token,
        video_id,
    }
}

/// What Bob sees of Ann: the feed, her videos and her card.
async fn reads(history: &History) -> Vec<Value> {
    let ann_id = history.ann.to_string();
    let mut seen = vec![];
    for path in ["/douyin/feed/", "/douyin/publish/list/", "/douyin/user/"] {
        let params = [("token", history.bob_token.as_str()), ("user_id", &ann_id)];
        seen.push(history.stack.query(path, &params).await);
    }
    seen
}

/// Redis loses everything under the stack's prefix, as a restart without persistence does.
async fn wipe_redis(stack: &TestStack) {
    infra::testing::wipe_redis(&stack.settings.redis).await;
    // The query API's client-side cache hears of the deletions from Redis (invalidation
    // messages), a moment after they happen. From then on, until Redis is rebuilt, reads are
    // "unavailable", never an empty feed.
    stack
        .eventually("/douyin/feed/", &[], |feed| feed["status_code"] == 503)
        .await;
}

/// Bob unlikes the video: it counts once, on top of the rebuilt models.
async fn unlike_counts_once(history: &History) {
    let stack = &history.stack;
    let reply = stack
        .command(
            "/douyin/favorite/action/",
            &[
                ("token", &history.bob_token),
                ("video_id", &history.video_id),
                ("action_type", "2"),
            ],
        )
        .await;
    assert_eq!(reply["status_code"], 0);
    // Reads made while the projector rebuilds Redis may see part of it; then all of it.
    stack
        .eventually("/douyin/feed/", &[("token", &history.bob_token)], |feed| {
            let video = &feed["video_list"][0];
            video["favorite_count"] == 0
                && video["comment_count"] == 1
                && video["is_favorite"] == false
                && video["author"]["is_follow"] == true
                && video["author"]["follower_count"] == 1
                && video["author"]["total_favorited"] == 0
        })
        .await;
    stack
        .user_eventually(history.bob, &history.bob_token, |bob| {
            bob["favorite_count"] == 0
        })
        .await;
    stack
        .user_eventually(history.ann, &history.bob_token, |ann| {
            ann["total_favorited"] == 0 && ann["follower_count"] == 1
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rebuilt_by_an_operator_answers_as_before() {
    let history = history().await;
    let stack = &history.stack;
    let before = reads(&history).await;
    wipe_redis(stack).await;

    let pool = infra::read_store::connect(&stack.settings.read_store)
        .await
        .unwrap();
    let redis = infra::redis_store::connect(&stack.settings.redis)
        .await
        .unwrap();
    let keys = infra::redis_store::Keys::new(&stack.settings.redis);
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
    assert_eq!(reads(&history).await, before);
    unlike_counts_once(&history).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_lost_its_data_is_rebuilt_by_the_projector_at_the_next_event() {
    let history = history().await;
    wipe_redis(&history.stack).await;
    unlike_counts_once(&history).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_the_old_generation_until_the_rebuilt_one_replaces_it_and_never_an_empty_feed()
{
    let history = history().await;
    let stack = &history.stack;
    let before = reads(&history).await;
    let base = infra::redis_store::Keys::new(&stack.settings.redis);
    let old = infra::testing::current_keys(&stack.settings.redis).await;
    let mut redis = infra::redis_store::connect(&stack.settings.redis)
        .await
        .unwrap();
    // Another deployment whose prefix begins with this one's.
    let neighbour = format!("{}v2:user:1", stack.settings.redis.redis_key_prefix);
    let () = redis::cmd("SET")
        .arg(&neighbour)
        .arg("theirs")
        .query_async(&mut redis)
        .await
        .unwrap();

    // A client polls the feed throughout the rebuild.
    let polling = tokio_util::sync::CancellationToken::new();
    let poller = tokio::spawn({
        let (http, url, stop) = (
            stack.http.clone(),
            format!("{}/douyin/feed/", stack.query_url),
            polling.clone(),
        );
        async move {
            let (mut polls, mut empty) = (0, 0);
            while !stop.is_cancelled() {
                let feed: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
                polls += 1;
                if feed["video_list"].as_array().is_none_or(Vec::is_empty) {
                    empty += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            (polls, empty)
        }
    });
    let pool = infra::read_store::connect(&stack.settings.read_store)
        .await
        .unwrap();
    let rebuilt = projector::rebuild::rebuild_redis(&pool, &redis, &base)
        .await
        .unwrap();
    polling.cancel();
    let (polls, empty) = poller.await.unwrap();

    assert!(rebuilt.generation > old.generation());
    assert!(polls > 10, "{polls} polls");
    assert_eq!(empty, 0, "{empty} of {polls} polls found the feed empty");
    assert_eq!(reads(&history).await, before);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(base.everything())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        left.iter()
            .all(|key| base.generation_of(key) != Some(old.generation())),
        "the old generation is dropped: {left:?}"
    );
    assert!(
        left.contains(&neighbour),
        "another deployment's key is left alone"
    );
    unlike_counts_once(&history).await;
}
