//! `make rebuild`: every read model rebuilt from the event store beside the live one while
//! clients read and write, then switched to; a rebuild stopped midway takes up where it
//! stopped.

use std::time::Duration;

use projector::replay::{Options, ReplayError, Replayed};
use serde_json::Value;
use sqlx::Connection;
use system_tests::TestStack;
use tokio_util::sync::CancellationToken;

/// One block of the event store (some 40 events) a page: several pages, so that clients and
/// a crash meet the replay midway.
fn one_block_a_page() -> Options {
    Options {
        blocks: 1,
        progress: false,
    }
}

async fn rebuild(stack: &TestStack, options: &Options) -> Result<Replayed, ReplayError> {
    let settings = stack.projector_settings();
    once_the_lock_is_free(|| {
        projector::replay::rebuild(&settings, &stack.settings.event_store, options)
    })
    .await
}

/// Runs `operate` again while it finds another replay running: one that was just stopped may
/// hold the replays' lock a moment longer.
async fn once_the_lock_is_free<T, F: std::future::Future<Output = Result<T, ReplayError>>>(
    operate: impl Fn() -> F,
) -> Result<T, ReplayError> {
    for _ in 0..50 {
        match operate().await {
            Err(ReplayError::AlreadyRunning) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
    Err(ReplayError::AlreadyRunning)
}

/// Likes (`1`) or unlikes (`2`) a video.
async fn like(stack: &TestStack, token: &str, video_id: &str, action: &str) {
    let reply = stack
        .command(
            "/douyin/favorite/action/",
            &[
                ("token", token),
                ("video_id", video_id),
                ("action_type", action),
            ],
        )
        .await;
    assert_eq!(reply["status_code"], 0, "{reply}");
}

/// What a client polling every 20 ms saw: answers that were not answers (errors, refusals),
/// and reads missing what was there before (an empty feed, a like or comment gone).
#[derive(Debug, Default)]
struct Polled {
    polls: usize,
    failed: Vec<Value>,
    missing: usize,
}

fn poll(
    stack: &TestStack,
    token: &str,
    user_id: i64,
    video_id: &str,
) -> (CancellationToken, tokio::task::JoinHandle<Polled>) {
    let stop = CancellationToken::new();
    let (http, base, token, user, video) = (
        stack.http.clone(),
        stack.query_url.clone(),
        token.to_owned(),
        user_id.to_string(),
        video_id.to_owned(),
    );
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut polled = Polled::default();
            while !stop.is_cancelled() {
                let reads = [
                    (
                        "/douyin/feed/",
                        vec![("token", token.as_str())],
                        "video_list",
                    ),
                    (
                        "/douyin/favorite/list/",
                        vec![("token", token.as_str()), ("user_id", user.as_str())],
                        "video_list",
                    ),
                    (
                        "/douyin/comment/list/",
                        vec![("token", token.as_str()), ("video_id", video.as_str())],
                        "comment_list",
                    ),
                ];
                for (path, params, list) in reads {
                    let reply: Value = http
                        .get(format!("{base}{path}"))
                        .query(&params)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    polled.polls += 1;
                    if reply["status_code"] != 0 {
                        polled.failed.push(reply);
                    } else if reply[list].as_array().is_none_or(Vec::is_empty) {
                        polled.missing += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            polled
        }
    });
    (stop, handle)
}

async fn schema_exists(stack: &TestStack, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
        .bind(name)
        .fetch_one(&stack.read_store)
        .await
        .unwrap()
}

async fn verify_clean(stack: &TestStack) {
    let report = verify::verify(
        &stack.verify_settings(),
        &verify::Options {
            wait: Duration::from_secs(20),
            topics: true,
        },
    )
    .await
    .unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_the_events_replaces_every_read_model_while_clients_read_and_write() {
    let stack = TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let (_, cat_token) = stack.registered("cat", "password1").await;
    let video_id = stack.published(ann, &ann_token, "cats").await["id"].to_string();
    like(&stack, &bob_token, &video_id, "1").await;
    let reply = stack
        .command(
            "/douyin/comment/action/",
            &[
                ("token", bob_token.as_str()),
                ("video_id", &video_id),
                ("action_type", "1"),
                ("comment_text", "nice"),
            ],
        )
        .await;
    assert_eq!(reply["status_code"], 0);
    // A chat message: an event with no Redis change.
    let reply = stack
        .command(
            "/douyin/message/action/",
            &[
                ("token", bob_token.as_str()),
                ("to_user_id", &ann.to_string()),
                ("action_type", "1"),
                ("content", "hello"),
            ],
        )
        .await;
    assert_eq!(reply["status_code"], 0);
    // Cat likes and unlikes many times: a long history to replay.
    for _ in 0..20 {
        like(&stack, &cat_token, &video_id, "1").await;
        like(&stack, &cat_token, &video_id, "2").await;
    }
    let bob_view = |feed: &Value| {
        let video = &feed["video_list"][0];
        video["favorite_count"] == 1 && video["comment_count"] == 1 && video["is_favorite"] == true
    };
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], bob_view)
        .await;
    let old = infra::testing::current_keys(&stack.settings.redis).await;

    // Bob's client reads throughout, and Cat goes on liking: Cat ends liking the video.
    let (stop_polling, poller) = poll(&stack, &bob_token, bob, &video_id);
    let writing = CancellationToken::new();
    let writer = tokio::spawn({
        let (stop, url, http, token, video) = (
            writing.clone(),
            stack.command_url.clone(),
            stack.http.clone(),
            cat_token.clone(),
            video_id.clone(),
        );
        async move {
            let mut written = 0;
            while !stop.is_cancelled() || written % 2 == 1 {
                let action = if written % 2 == 0 { "1" } else { "2" };
                let reply: Value = http
                    .post(format!("{url}/douyin/favorite/action/"))
                    .query(&[
                        ("token", token.as_str()),
                        ("video_id", &video),
                        ("action_type", action),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(reply["status_code"], 0, "{reply}");
                written += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            written
        }
    });

    let replayed = rebuild(&stack, &one_block_a_page()).await.unwrap();
    writing.cancel();
    let written = writer.await.unwrap();
    stop_polling.cancel();
    let polled = poller.await.unwrap();

    assert!(!replayed.resumed);
    assert!(replayed.replayed > 40, "{replayed:?}");
    assert!(replayed.generation > old.generation());
    assert!(written > 0, "Cat wrote during the rebuild");
    assert!(polled.polls > 30, "{polled:?}");
    assert!(polled.failed.is_empty(), "{polled:?}");
    assert_eq!(polled.missing, 0, "reads found something gone: {polled:?}");
    // Nothing of the old generation, nor of the replay's own, is left.
    assert!(!schema_exists(&stack, "public_replay").await);
    assert!(!schema_exists(&stack, "public_replaced").await);
    let base = infra::redis_store::Keys::new(&stack.settings.redis);
    let mut redis = infra::redis_store::connect(&stack.settings.redis)
        .await
        .unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(base.everything())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        left.iter().all(|key| base
            .generation_of(key)
            .is_none_or(|g| g == replayed.generation)),
        "only the new generation is left: {left:?}"
    );

    // Every write, made before or during the rebuild, is in the new generation once, and
    // the projector goes on into it.
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], bob_view)
        .await;
    like(&stack, &cat_token, &video_id, "1").await;
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], |feed| {
            feed["video_list"][0]["favorite_count"] == 2
        })
        .await;
    let list = stack
        .query(
            "/douyin/favorite/list/",
            &[("token", &bob_token), ("user_id", &bob.to_string())],
        )
        .await;
    assert_eq!(list["video_list"].as_array().unwrap().len(), 1);
    verify_clean(&stack).await;
}

/// Ann's video, liked and unliked by Bob 100 times and liked once more: 201 events of one
/// aggregate (several blocks of the table), the video liked once. Returns Bob's token and the
/// video.
async fn toggled_history(stack: &TestStack) -> (String, String) {
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (_, bob_token) = stack.registered("bob", "password1").await;
    let video_id = stack.published(ann, &ann_token, "cats").await["id"].to_string();
    for _ in 0..100 {
        like(stack, &bob_token, &video_id, "1").await;
        like(stack, &bob_token, &video_id, "2").await;
    }
    like(stack, &bob_token, &video_id, "1").await;
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], liked_once)
        .await;
    (bob_token, video_id)
}

fn liked_once(feed: &Value) -> bool {
    let video = &feed["video_list"][0];
    video["favorite_count"] == 1 && video["is_favorite"] == true
}

/// Starts a replay and stops it between a page's Redis changes and its Postgres commit: the
/// test holds the table that commit writes, then the replay is dropped, as a killed one is.
async fn stop_a_replay_midway(stack: &TestStack) {
    let replaying = tokio::spawn({
        let (settings, event_store) = (
            stack.projector_settings(),
            stack.settings.event_store.clone(),
        );
        async move { projector::replay::rebuild(&settings, &event_store, &one_block_a_page()).await }
    });
    let mut holder = sqlx::PgConnection::connect(infra::settings::expose(
        &stack.settings.read_store.read_database_url,
    ))
    .await
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT events FROM public_replay.replay_progress")
                .fetch_optional(&mut holder)
                .await
                .unwrap_or(None);
        if applied.is_some_and(|applied| applied >= 10) {
            break;
        }
        assert!(
            !replaying.is_finished(),
            "the replay ended before it could be stopped"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the replay made no progress"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE public_replay.replay_progress IN EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    replaying.abort();
    assert!(replaying.await.unwrap_err().is_cancelled());
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
}

/// The prefix's keys, a connection to Redis, and the generation a stopped replay was building.
async fn replaying_generation(
    stack: &TestStack,
) -> (infra::redis_store::Keys, redis::aio::ConnectionManager, u64) {
    let base = infra::redis_store::Keys::new(&stack.settings.redis);
    let mut redis = infra::redis_store::connect(&stack.settings.redis)
        .await
        .unwrap();
    let building: u64 = redis::cmd("GET")
        .arg(base.replaying())
        .query_async(&mut redis)
        .await
        .unwrap();
    (base, redis, building)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_stopped_midway_takes_up_where_it_stopped_and_counts_each_event_once() {
    let stack = TestStack::spawn().await;
    let (bob_token, _) = toggled_history(&stack).await;
    stop_a_replay_midway(&stack).await;

    let replayed = rebuild(&stack, &one_block_a_page()).await.unwrap();
    assert!(replayed.resumed, "{replayed:?}");
    assert!(
        replayed.replayed < 201,
        "it read again only what was left: {replayed:?}"
    );
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], liked_once)
        .await;
    verify_clean(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_whose_redis_generation_came_back_older_starts_over() {
    let stack = TestStack::spawn().await;
    let (bob_token, video_id) = toggled_history(&stack).await;
    stop_a_replay_midway(&stack).await;
    // Redis comes back from a snapshot taken a few events earlier: the video's card in the
    // generation being built misses the last likes, and its count of events is lower.
    let (base, mut redis, building) = replaying_generation(&stack).await;
    let generation = base.in_generation(building);
    let () = redis::pipe()
        .cmd("DECRBY")
        .arg(generation.replayed())
        .arg(5)
        .ignore()
        .cmd("DEL")
        .arg(generation.video(video_id.parse().unwrap()))
        .ignore()
        .query_async(&mut redis)
        .await
        .unwrap();

    // Found at once, or at the switch (while Redis is ahead of Postgres by the page the
    // crash cut short, its count cannot tell): either way it starts over by itself.
    let replayed = rebuild(&stack, &one_block_a_page()).await.unwrap();
    assert!(
        replayed.replayed >= 201,
        "it read everything again: {replayed:?}"
    );
    assert!(replayed.generation > building);
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], liked_once)
        .await;
    verify_clean(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_stopped_rebuild_built_is_dropped_when_abandoned_and_the_live_models_stay() {
    let stack = TestStack::spawn().await;
    let (bob_token, _) = toggled_history(&stack).await;
    stop_a_replay_midway(&stack).await;
    let (base, mut redis, building) = replaying_generation(&stack).await;

    let settings = stack.projector_settings();
    let abandoned = once_the_lock_is_free(|| projector::replay::abandon(&settings)).await;
    assert!(abandoned.unwrap(), "it found something to drop");

    assert!(!schema_exists(&stack, "public_replay").await);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(base.everything())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        left.iter()
            .all(|key| base.generation_of(key) != Some(building) && *key != base.replaying()),
        "nothing of the stopped replay is left: {left:?}"
    );
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], liked_once)
        .await;
    verify_clean(&stack).await;
}
