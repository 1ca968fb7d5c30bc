//! An event the projector cannot read (a version from a newer build, say) holds back its own
//! aggregate and nothing else; once readable, `projector redrive` applies it and the events
//! held behind it, in order. An event that comes before an earlier one of its aggregate waits
//! for it.

use std::time::Duration;

use infra::envelope::PublishedEvent;
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};
use system_tests::{polled, TestStack};

fn like_event(video: i64, user: i64, author: i64, sequence: i64, liked: bool) -> PublishedEvent {
    let (event_type, payload) = if liked {
        (
            "VideoLiked",
            json!({"video_id": video, "user_id": user, "video_author_id": author, "liked_at": 1}),
        )
    } else {
        (
            "VideoUnliked",
            json!({"video_id": video, "user_id": user, "video_author_id": author}),
        )
    };
    let aggregate_id = format!("{video}:{user}");
    PublishedEvent {
        event_id: format!("like/{aggregate_id}/{sequence}"),
        event_type: event_type.to_owned(),
        event_version: 1,
        aggregate_type: "like".to_owned(),
        aggregate_id,
        sequence,
        occurred_at: chrono::Utc::now(),
        payload: payload.as_object().unwrap().clone(),
    }
}

async fn send(stack: &TestStack, event: &PublishedEvent) {
    let producer = infra::kafka::producer(&stack.settings.kafka).unwrap();
    let topic = infra::kafka::Topics::new(&stack.settings.kafka).for_aggregate("like");
    let value = event.to_json();
    producer
        .send(
            FutureRecord::to(&topic)
                .key(&event.aggregate_id)
                .payload(&value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .unwrap();
}

async fn video_card(stack: &TestStack, token: &str) -> Value {
    let feed = stack.query("/douyin/feed/", &[("token", token)]).await;
    feed["video_list"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_holds_back_its_aggregate_until_redriven() {
    let stack = TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let video = stack.published(ann, &ann_token, "cats").await;
    let video_id = video["id"].as_i64().unwrap();

    // Bob's like in a version this build does not read, then an unlike and a like after it.
    let mut newer = like_event(video_id, bob, ann, 1, true);
    newer.event_version = 2;
    send(&stack, &newer).await;
    send(&stack, &like_event(video_id, bob, ann, 2, false)).await;
    send(&stack, &like_event(video_id, bob, ann, 3, true)).await;

    // Other aggregates go on: a comment on the same video is counted.
    let reply = stack
        .command(
            "/douyin/comment/action/",
            &[
                ("token", &bob_token),
                ("video_id", &video_id.to_string()),
                ("action_type", "1"),
                ("comment_text", "nice"),
            ],
        )
        .await;
    assert_eq!(reply["status_code"], 0);
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], |feed| {
            feed["video_list"][0]["comment_count"] == 1
        })
        .await;

    let pool = infra::read_store::connect(&stack.settings.read_store)
        .await
        .unwrap();
    let client = pool.get().await.unwrap();
    let held: Vec<(i64, String)> = polled(|| async {
        let rows: Vec<(i64, String)> = client
            .query(
                "SELECT id, error FROM dead_letters WHERE redriven_at IS NULL ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        if rows.len() == 3 {
            Ok(rows)
        } else {
            Err(format!("three dead letters expected: {rows:?}"))
        }
    })
    .await;
    assert!(held[0].1.contains("version 2"), "{held:?}");
    assert!(held[1].1.contains("held back") || held[1].1.contains("dead-lettered"));
    let card = video_card(&stack, &bob_token).await;
    assert_eq!(
        (&card["favorite_count"], &card["is_favorite"]),
        (&0.into(), &false.into())
    );

    // The projector is upgraded (here: the event is mended to the version it reads), and the
    // operator redrives: the like, unlike and like apply in order.
    client
        .execute(
            "UPDATE dead_letters SET payload = $2 WHERE id = $1",
            &[
                &held[0].0,
                &like_event(video_id, bob, ann, 1, true).to_json(),
            ],
        )
        .await
        .unwrap();
    let projections = projector::projections::Projections::new(
        pool.clone(),
        infra::redis_store::connect(&stack.settings.redis)
            .await
            .unwrap(),
        infra::redis_store::Keys::new(&stack.settings.redis),
    );
    let redriven = projector::redrive::redrive(&pool, &projections)
        .await
        .unwrap();
    assert_eq!(
        redriven,
        projector::redrive::Redriven {
            applied: 3,
            left: 0
        }
    );
    // Read through the query API's card cache, which hears of Redis's change a moment later.
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], |feed| {
            let card = &feed["video_list"][0];
            card["favorite_count"] == 1 && card["is_favorite"] == true
        })
        .await;

    // The aggregate is no longer held back.
    send(&stack, &like_event(video_id, bob, ann, 4, false)).await;
    stack
        .eventually("/douyin/feed/", &[("token", &bob_token)], |feed| {
            feed["video_list"][0]["favorite_count"] == 0
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_comes_before_an_earlier_one_waits_for_it_then_both_apply_in_order() {
    let stack = TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let video = stack.published(ann, &ann_token, "cats").await;
    let video_id = video["id"].as_i64().unwrap();
    let pool = infra::read_store::connect(&stack.settings.read_store)
        .await
        .unwrap();

    // Bob likes, then unlikes; the broker hands over the unlike's successor (a like) first, as
    // after a partition change or a lost message published again.
    send(&stack, &like_event(video_id, bob, ann, 1, true)).await;
    send(&stack, &like_event(video_id, bob, ann, 3, true)).await;
    let gaps = gaps_once(&pool, |gaps| !gaps.is_empty()).await;
    assert_eq!((gaps[0].last_applied, &gaps[0].waiting[..]), (1, &[3][..]));
    let card = video_card(&stack, &bob_token).await;
    assert_eq!(
        card["favorite_count"], 1,
        "the like after the gap waits: {card}"
    );

    // Another like of another user meanwhile is not held back.
    let (carl, carl_token) = stack.registered("carl", "password1").await;
    send(&stack, &like_event(video_id, carl, ann, 1, true)).await;
    stack
        .eventually("/douyin/feed/", &[("token", &carl_token)], |feed| {
            feed["video_list"][0]["favorite_count"] == 2
        })
        .await;

    // The missing unlike comes: the unlike and the waiting like apply, in that order. The card
    // reads the same before and after (two likes, Bob's among them), so the test waits for the
    // gap to close rather than for the card: the other order would leave Bob's like undone.
    send(&stack, &like_event(video_id, bob, ann, 2, false)).await;
    gaps_once(&pool, <[_]>::is_empty).await;
    let card = video_card(&stack, &bob_token).await;
    assert_eq!(
        (&card["favorite_count"], &card["is_favorite"]),
        (&2.into(), &true.into()),
        "{card}"
    );
}

/// The projector's gaps, once `ready` holds of them (within ten seconds).
async fn gaps_once(
    pool: &deadpool_postgres::Pool,
    ready: impl Fn(&[projector::waiting::Gap]) -> bool,
) -> Vec<projector::waiting::Gap> {
    let ready = &ready;
    polled(|| async move {
        let gaps = projector::waiting::gaps(pool).await.unwrap();
        if ready(&gaps) {
            Ok(gaps)
        } else {
            Err(format!("the gaps did not settle: {gaps:?}"))
        }
    })
    .await
}
