//! Read models against the real read store.

use chrono::Utc;
use infra::envelope::PublishedEvent;
use infra::testing::TestSettings;
use projector::projections::{Item, Outcome, ProjectionError, Projections, Source};
use projector::span::Span;
use serde_json::json;

fn registered(user_id: i64, sequence: i64, name: &str) -> PublishedEvent {
    PublishedEvent {
        event_id: format!("user/{user_id}/{sequence}"),
        event_type: "UserRegistered".to_owned(),
        event_version: 1,
        aggregate_type: "user".to_owned(),
        aggregate_id: user_id.to_string(),
        sequence,
        occurred_at: Utc::now(),
        payload: json!({ "name": name }).as_object().unwrap().clone(),
    }
}

/// Projections over a fresh read database and Redis prefix.
async fn stores() -> (TestSettings, Projections, deadpool_postgres::Pool) {
    let settings = TestSettings::new().await;
    let pool = infra::read_store::connect_for_batches(&settings.read_store)
        .await
        .unwrap();
    let redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let keys = infra::testing::current_keys(&settings.redis).await;
    let projections = Projections::new(pool.clone(), redis, keys);
    // As the projector does when it starts.
    projections.restore_redis().await.unwrap();
    (settings, projections, pool)
}

/// Projections over a fresh read database and the Redis at `redis_url`.
async fn stores_on(redis_url: &str) -> (TestSettings, Projections, deadpool_postgres::Pool) {
    let mut settings = TestSettings::new().await;
    settings.redis.redis_url = infra::settings::secret(redis_url);
    let pool = infra::read_store::connect_for_batches(&settings.read_store)
        .await
        .unwrap();
    let redis = infra::redis_store::connect_for_batches(&settings.redis)
        .await
        .unwrap();
    let keys = infra::testing::current_keys(&settings.redis).await;
    let projections = Projections::new(pool.clone(), redis, keys);
    projections.restore_redis().await.unwrap();
    (settings, projections, pool)
}

async fn projections() -> (Projections, deadpool_postgres::Pool) {
    let (_, projections, pool) = stores().await;
    (projections, pool)
}

async fn names(pool: &deadpool_postgres::Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    client
        .query("SELECT name FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn an_event_delivered_twice_is_applied_once() {
    let (projections, pool) = projections().await;
    let event = registered(1, 1, "ann");
    assert_eq!(
        projections.apply(event.clone()).await.unwrap(),
        Outcome::Applied
    );
    assert_eq!(
        projections.apply(event.clone()).await.unwrap(),
        Outcome::AlreadyApplied
    );
    assert_eq!(names(&pool).await, ["ann"]);
}

#[tokio::test]
async fn events_of_other_aggregates_are_not_mistaken_for_repeats() {
    let (projections, pool) = projections().await;
    for id in 1..=3 {
        let event = registered(id, 1, &format!("user{id}"));
        assert_eq!(
            projections.apply(event.clone()).await.unwrap(),
            Outcome::Applied
        );
    }
    assert_eq!(names(&pool).await, ["user1", "user2", "user3"]);
}

#[tokio::test]
async fn an_event_no_projection_understands_is_reported_unreadable() {
    let (projections, pool) = projections().await;
    let mut event = registered(1, 1, "ann");
    event.event_type = "UserTeleported".to_owned();
    assert!(matches!(
        projections.apply(event.clone()).await,
        Err(ProjectionError::Unreadable(_))
    ));
    let ignored = PublishedEvent {
        aggregate_type: "account".to_owned(),
        ..registered(1, 1, "ann")
    };
    assert_eq!(
        projections.apply(ignored.clone()).await.unwrap(),
        Outcome::Ignored
    );
    assert!(names(&pool).await.is_empty());
}

fn event(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_type: &str,
    payload: serde_json::Value,
) -> PublishedEvent {
    infra::testing::published_event(
        aggregate_type,
        aggregate_id,
        sequence,
        event_type,
        Utc::now(),
        payload,
    )
}

fn liked(sequence: i64) -> PublishedEvent {
    event(
        "like",
        "7:2",
        sequence,
        "VideoLiked",
        json!({"video_id": 7, "user_id": 2, "video_author_id": 1, "liked_at": 5}),
    )
}

/// The video's `favorite_count`, the liker's `favorite_count`, the author's `total_favorited`.
async fn counters(settings: &TestSettings) -> (i64, i64, i64) {
    let keys = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let (video, liker, author): (Option<i64>, Option<i64>, Option<i64>) = redis::pipe()
        .hget(keys.video(7), "favorite_count")
        .hget(keys.user(2), "favorite_count")
        .hget(keys.user(1), "total_favorited")
        .query_async(&mut redis)
        .await
        .unwrap();
    (video.unwrap_or(0), liker.unwrap_or(0), author.unwrap_or(0))
}

async fn like_rows(pool: &deadpool_postgres::Pool) -> i64 {
    let client = pool.get().await.unwrap();
    let row = client
        .query_one("SELECT count(*) FROM likes", &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn a_like_delivered_twice_counts_once_everywhere() {
    let (settings, projections, pool) = stores().await;
    assert_eq!(projections.apply(liked(1)).await.unwrap(), Outcome::Applied);
    assert_eq!(
        projections.apply(liked(1)).await.unwrap(),
        Outcome::AlreadyApplied
    );
    assert_eq!(counters(&settings).await, (1, 1, 1));
    assert_eq!(like_rows(&pool).await, 1);
}

#[tokio::test]
async fn a_redis_change_lost_in_a_crash_is_made_when_the_event_comes_again() {
    let (settings, projections, pool) = stores().await;
    projections.apply(liked(1)).await.unwrap();

    // As if the projector died after the Postgres commit, before the Redis script ran.
    let keys = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let _: () = redis::pipe()
        .hdel(keys.applied("like/7:2").0, keys.applied("like/7:2").1)
        .del(keys.video(7))
        .del(keys.user(2))
        .del(keys.user(1))
        .query_async(&mut redis)
        .await
        .unwrap();

    assert_eq!(projections.apply(liked(1)).await.unwrap(), Outcome::Applied);
    assert_eq!(counters(&settings).await, (1, 1, 1));
    assert_eq!(like_rows(&pool).await, 1, "Postgres is not changed twice");
}

#[tokio::test]
async fn a_redis_that_lost_its_data_is_rebuilt_before_the_next_event_is_applied() {
    let (settings, projections, _pool) = stores().await;
    projections.apply(registered(1, 1, "ann")).await.unwrap();

    // Redis restarts without its data.
    infra::testing::wipe_redis(&settings.redis).await;

    assert_eq!(
        projections.apply(registered(2, 1, "bob")).await.unwrap(),
        Outcome::Applied
    );
    let keys = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let (ann, bob): (Option<String>, Option<String>) = redis::pipe()
        .hget(keys.user(1), "name")
        .hget(keys.user(2), "name")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!((ann.as_deref(), bob.as_deref()), (Some("ann"), Some("bob")));
    assert_eq!(
        projections.apply(registered(1, 1, "ann")).await.unwrap(),
        Outcome::AlreadyApplied,
        "the rebuilt Redis knows what was applied before"
    );
}

async fn dead_letter(pool: &deadpool_postgres::Pool, topic: &str, event: &PublishedEvent) {
    let client = pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO dead_letters (topic, partition, \"offset\", key, payload, error)
             VALUES ($1, 0, (SELECT count(*) FROM dead_letters), $2, $3, 'unreadable then')",
            &[&topic, &event.aggregate_id.as_bytes(), &event.to_json()],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn redrive_applies_what_is_readable_now_and_leaves_the_rest_of_a_stuck_aggregate() {
    let (settings, projections, pool) = stores().await;
    // Readable now, as after an upgrade of the projector.
    dead_letter(&pool, "like", &liked(1)).await;
    dead_letter(&pool, "user", &registered(5, 1, "eve")).await;
    // Still unreadable, and an event held back behind it.
    let mut teleported = registered(9, 1, "zed");
    teleported.event_type = "UserTeleported".to_owned();
    dead_letter(&pool, "user", &teleported).await;
    dead_letter(&pool, "user", &registered(9, 2, "zed")).await;

    let redriven = projector::redrive::redrive(&pool, &projections)
        .await
        .unwrap();

    assert_eq!(
        redriven,
        projector::redrive::Redriven {
            applied: 2,
            left: 2
        }
    );
    assert_eq!(counters(&settings).await, (1, 1, 1));
    assert_eq!(names(&pool).await, ["eve"]);
    let client = pool.get().await.unwrap();
    let left: Vec<i64> = client
        .query(
            "SELECT id FROM dead_letters WHERE redriven_at IS NULL ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, [3, 4]);
    assert_eq!(
        projector::redrive::redrive(&pool, &projections)
            .await
            .unwrap(),
        projector::redrive::Redriven {
            applied: 0,
            left: 2
        },
        "a second redrive finds only the stuck aggregate"
    );
}

#[tokio::test]
async fn a_batch_applies_an_aggregates_events_in_order_and_a_repeat_in_it_once() {
    let (settings, projections, pool) = stores().await;
    let unliked = |sequence| {
        event(
            "like",
            "7:2",
            sequence,
            "VideoUnliked",
            json!({"video_id": 7, "user_id": 2, "video_author_id": 1}),
        )
    };
    let events = [liked(1), unliked(2), liked(3), liked(3)];
    let items: Vec<_> = events
        .into_iter()
        .map(|event| redriven(&projections, event))
        .collect();

    let outcomes = projections.execute(&items, &Span::default()).await.unwrap();

    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Applied,
            Outcome::AlreadyApplied
        ]
    );
    assert_eq!(counters(&settings).await, (1, 1, 1));
    assert_eq!(like_rows(&pool).await, 1);
}

#[tokio::test]
async fn a_batch_writes_many_aggregates_rows_together_and_each_aggregates_in_order() {
    let (settings, projections, pool) = stores().await;
    let like = |user: i64, sequence, liked: bool| {
        let (event_type, payload) = if liked {
            (
                "VideoLiked",
                json!({"video_id": 7, "user_id": user, "video_author_id": 1, "liked_at": 5}),
            )
        } else {
            (
                "VideoUnliked",
                json!({"video_id": 7, "user_id": user, "video_author_id": 1}),
            )
        };
        event("like", &format!("7:{user}"), sequence, event_type, payload)
    };
    // Three users like; the second unlikes and likes again, all in one batch.
    let events = [
        like(2, 1, true),
        like(3, 1, true),
        like(3, 2, false),
        like(4, 1, true),
        like(3, 3, true),
    ];
    let items: Vec<_> = events
        .into_iter()
        .map(|event| redriven(&projections, event))
        .collect();

    let outcomes = projections.execute(&items, &Span::default()).await.unwrap();

    assert!(outcomes.iter().all(|outcome| *outcome == Outcome::Applied));
    assert_eq!(like_rows(&pool).await, 3);
    let (video, _, author) = counters(&settings).await;
    assert_eq!((video, author), (3, 3));
}

#[tokio::test]
async fn an_event_whose_aggregate_id_is_not_the_one_of_its_rows_is_refused_and_changes_nothing() {
    let (settings, projections, pool) = stores().await;
    // The payload's like is video 7's by user 2: its aggregate is "7:2".
    let elsewhere = PublishedEvent {
        aggregate_id: "8:2".to_owned(),
        ..liked(1)
    };
    // User 1 is "1", never "01".
    let padded = PublishedEvent {
        aggregate_id: "01".to_owned(),
        ..registered(1, 1, "ann")
    };
    for event in [elsewhere, padded] {
        assert!(matches!(
            projections.apply(event).await,
            Err(ProjectionError::Unreadable(_))
        ));
    }
    assert_eq!(counters(&settings).await, (0, 0, 0));
    assert_eq!(like_rows(&pool).await, 0);
    assert!(names(&pool).await.is_empty());
}

/// An event as `projector redrive` hands it over: not held back by dead letters.
fn redriven(projections: &Projections, event: PublishedEvent) -> Item {
    Item::Event {
        plan: projections.plan(&event).unwrap().unwrap(),
        event,
        source: Source::Redrive,
    }
}

/// `batch` as messages of partition 0 of their topics (each topic's offsets from 0), and
/// their span.
fn messages(batch: &[PublishedEvent]) -> (Vec<projector::dead_letters::Received>, Span) {
    let mut next: std::collections::HashMap<&str, i64> = Default::default();
    let messages: Vec<_> = batch
        .iter()
        .map(|event| {
            let offset = next.entry(event.aggregate_type.as_str()).or_default();
            *offset += 1;
            received(event, *offset - 1)
        })
        .collect();
    let span = Span::of(
        messages
            .iter()
            .map(|message| (message.topic.as_str(), message.partition, message.offset)),
    );
    (messages, span)
}

fn received(event: &PublishedEvent, offset: i64) -> projector::dead_letters::Received {
    projector::dead_letters::Received {
        topic: event.aggregate_type.clone(),
        partition: 0,
        offset,
        key: Some(event.aggregate_id.as_bytes().to_vec()),
        payload: Some(event.to_json()),
    }
}

#[tokio::test]
async fn an_unreadable_message_holds_back_the_rest_of_its_aggregate_and_nothing_else() {
    let (settings, projections, pool) = stores().await;
    let mut newer = liked(2);
    newer.event_version = 2;
    let batch = [
        registered(1, 1, "ann"),
        liked(1),
        newer,
        liked(3),
        registered(5, 1, "eve"),
    ];
    let (messages, span) = messages(&batch);
    let items: Vec<Item> = messages
        .into_iter()
        .map(|message| projections.read(message))
        .collect();

    let outcomes = projections.execute(&items, &span).await.unwrap();

    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::Applied,
            Outcome::DeadLettered,
            Outcome::HeldBack,
            Outcome::Applied
        ]
    );
    assert_eq!(counters(&settings).await, (1, 1, 1), "only the first like");
    assert_eq!(names(&pool).await, ["ann", "eve"]);
    let client = pool.get().await.unwrap();
    let kept: i64 = client
        .query_one(
            "SELECT count(*) FROM dead_letters WHERE redriven_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2);

    // The projector died after the Postgres commit, before the Redis round trip: the batch
    // comes again. The like before the dead letter still reaches Redis; nothing is applied
    // or kept twice.
    let keys = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let _: () = redis::pipe()
        .hdel(keys.applied("like/7:2").0, keys.applied("like/7:2").1)
        .del(keys.video(7))
        .del(keys.user(2))
        .hdel(keys.user(1), "total_favorited")
        .query_async(&mut redis)
        .await
        .unwrap();
    let again = projections.execute(&items, &span).await.unwrap();
    assert_eq!(
        again,
        [
            Outcome::AlreadyApplied,
            Outcome::Applied,
            Outcome::DeadLettered,
            Outcome::HeldBack,
            Outcome::AlreadyApplied
        ]
    );
    assert_eq!(counters(&settings).await, (1, 1, 1));
    let kept: i64 = client
        .query_one("SELECT count(*) FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2);
}

fn unliked(sequence: i64) -> PublishedEvent {
    event(
        "like",
        "7:2",
        sequence,
        "VideoUnliked",
        json!({"video_id": 7, "user_id": 2, "video_author_id": 1}),
    )
}

async fn waiting_rows(pool: &deadpool_postgres::Pool) -> i64 {
    let client = pool.get().await.unwrap();
    client
        .query_one("SELECT count(*) FROM waiting_events", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn an_event_that_comes_before_an_earlier_one_waits_for_it_then_both_apply_in_order() {
    let (settings, projections, pool) = stores().await;
    assert_eq!(projections.apply(liked(1)).await.unwrap(), Outcome::Applied);

    // Events 3 and 4 come before 2: applying them on top of 1 would count a second like.
    assert_eq!(projections.apply(liked(3)).await.unwrap(), Outcome::Waiting);
    assert_eq!(
        projections.apply(unliked(4)).await.unwrap(),
        Outcome::Waiting
    );
    assert_eq!(
        projections.apply(liked(3)).await.unwrap(),
        Outcome::Waiting,
        "a repeat of a waiting event waits once"
    );
    assert_eq!(counters(&settings).await, (1, 1, 1), "held back");
    let gaps = projector::waiting::gaps(&pool).await.unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        (
            gaps[0].aggregate_id.as_str(),
            gaps[0].last_applied,
            &gaps[0].waiting[..]
        ),
        ("7:2", 1, &[3, 4][..]),
        "operators see the gap"
    );

    assert_eq!(
        projections.apply(unliked(2)).await.unwrap(),
        Outcome::Applied
    );

    assert_eq!(
        counters(&settings).await,
        (0, 0, 0),
        "liked, unliked, liked, unliked"
    );
    assert_eq!(like_rows(&pool).await, 0);
    assert_eq!(waiting_rows(&pool).await, 0);
    assert!(projector::waiting::gaps(&pool).await.unwrap().is_empty());
    assert_eq!(
        projections.apply(liked(3)).await.unwrap(),
        Outcome::AlreadyApplied
    );
}

#[tokio::test]
async fn events_reordered_within_a_batch_apply_in_sequence_order_even_when_delivered_again() {
    let (settings, projections, pool) = stores().await;
    let items = || {
        [liked(1), liked(3), unliked(2)]
            .into_iter()
            .map(|event| redriven(&projections, event))
            .collect::<Vec<_>>()
    };

    let outcomes = projections
        .execute(&items(), &Span::default())
        .await
        .unwrap();

    assert_eq!(
        outcomes,
        [Outcome::Applied, Outcome::Waiting, Outcome::Applied]
    );
    assert_eq!(counters(&settings).await, (1, 1, 1));
    assert_eq!(like_rows(&pool).await, 1);
    assert_eq!(waiting_rows(&pool).await, 0, "released in the same batch");

    // The projector died after the Postgres commit, before the Redis round trip: the batch
    // comes again, in the order it came. Redis must take 1, 2, 3 in that order.
    wipe_like_in_redis(&settings).await;
    let again = projections
        .execute(&items(), &Span::default())
        .await
        .unwrap();
    assert_eq!(
        again,
        [Outcome::Applied, Outcome::Applied, Outcome::Applied],
        "each event reached Redis (applied there now, found applied in Postgres)"
    );
    assert_eq!(counters(&settings).await, (1, 1, 1));
}

/// As if the like's Redis changes were never made.
async fn wipe_like_in_redis(settings: &TestSettings) {
    let keys = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let _: () = redis::pipe()
        .hdel(keys.applied("like/7:2").0, keys.applied("like/7:2").1)
        .del(keys.video(7))
        .del(keys.user(2))
        .del(keys.user(1))
        .query_async(&mut redis)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_released_event_whose_redis_change_was_lost_reaches_redis_with_its_releasers_repeat() {
    let (settings, projections, pool) = stores().await;
    projections.apply(liked(1)).await.unwrap();
    // Event 2 is missing for a while (lost by the broker, then published again).
    assert_eq!(projections.apply(liked(3)).await.unwrap(), Outcome::Waiting);
    projections.apply(unliked(2)).await.unwrap();
    assert_eq!(counters(&settings).await, (1, 1, 1));

    // As if the projector had died between the two stores' commits while releasing 3: Postgres
    // has 2 and 3, the row of 3 is still there, marked released, and Redis has neither.
    let client = pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO waiting_events (aggregate_type, aggregate_id, sequence, event, released_at)
             VALUES ('like', '7:2', 3, $1, now())",
            &[&String::from_utf8(liked(3).to_json()).unwrap()],
        )
        .await
        .unwrap();
    wipe_like_in_redis(&settings).await;
    let keys = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let (record, field) = keys.applied("like/7:2");
    let _: () = redis::cmd("HSET")
        .arg(record)
        .arg(field)
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::pipe()
        .hset(keys.video(7), "favorite_count", 1)
        .hset(keys.user(2), "favorite_count", 1)
        .hset(keys.user(1), "total_favorited", 1)
        .query_async(&mut redis)
        .await
        .unwrap();

    // Event 2 comes again (its offset was never committed).
    assert_eq!(
        projections.apply(unliked(2)).await.unwrap(),
        Outcome::Applied
    );

    assert_eq!(
        counters(&settings).await,
        (1, 1, 1),
        "2 and 3 reached Redis"
    );
    assert_eq!(waiting_rows(&pool).await, 0);
}

/// User `user`'s like of video 7 (by user 1), the first event of its aggregate.
fn liked_by(user: i64) -> PublishedEvent {
    event(
        "like",
        &format!("7:{user}"),
        1,
        "VideoLiked",
        json!({"video_id": 7, "user_id": user, "video_author_id": 1, "liked_at": 5}),
    )
}

/// Applies `events` as one batch of messages of partition 0 of the `like` topic, from
/// offset `first` on, and waits for the rebuild of Redis it may have started.
async fn deliver(projections: &Projections, first: i64, events: &[PublishedEvent]) {
    deliver_only(projections, first, events).await;
    projections.settled().await;
}

/// [`deliver`], without waiting for a rebuild of Redis it started.
async fn deliver_only(projections: &Projections, first: i64, events: &[PublishedEvent]) {
    let items: Vec<Item> = events
        .iter()
        .zip(first..)
        .map(|(event, offset)| projections.read(received(event, offset)))
        .collect();
    let span = Span::of(
        (first..)
            .take(events.len())
            .map(|offset| ("like", 0, offset)),
    );
    projections.execute(&items, &span).await.unwrap();
}

/// Every key of the test's Redis prefix, dumped: a snapshot to restore later.
async fn snapshot(settings: &TestSettings) -> Vec<(String, Vec<u8>)> {
    let keys = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let names: Vec<String> = redis::cmd("KEYS")
        .arg(keys.everything())
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut dumped = vec![];
    for name in names {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&name)
            .query_async(&mut redis)
            .await
            .unwrap();
        dumped.push((name, dump));
    }
    dumped
}

/// Redis restarted from `snapshot`: what was written since is gone, what was there is back.
async fn restore(settings: &TestSettings, snapshot: &[(String, Vec<u8>)]) {
    infra::testing::wipe_redis(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    for (name, dump) in snapshot {
        let () = redis::cmd("RESTORE")
            .arg(name)
            .arg(0)
            .arg(dump)
            .arg("REPLACE")
            .query_async(&mut redis)
            .await
            .unwrap();
    }
}

/// Ann (user 1) and her video 7, which the likes below are of.
async fn anns_video(projections: &Projections) {
    projections.apply(registered(1, 1, "ann")).await.unwrap();
    let published = event(
        "video",
        "7",
        1,
        "VideoPublished",
        json!({"author_id": 1, "title": "cats", "video_key": "videos/7.mp4",
               "cover_key": null, "published_at": 1}),
    );
    assert_eq!(
        projections.apply(published).await.unwrap(),
        Outcome::Applied
    );
}

async fn video_likes(settings: &TestSettings) -> i64 {
    let keys = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let count: Option<i64> = redis::cmd("HGET")
        .arg(keys.video(7))
        .arg("favorite_count")
        .query_async(&mut redis)
        .await
        .unwrap();
    count.unwrap_or(0)
}

#[tokio::test]
async fn a_redis_restored_from_an_older_snapshot_is_caught_by_the_next_batch_and_rebuilt() {
    let (settings, projections, _pool) = stores().await;
    anns_video(&projections).await;
    deliver(&projections, 0, &[liked_by(2)]).await;
    let before_the_likes = snapshot(&settings).await;
    deliver(&projections, 1, &[liked_by(3), liked_by(4)]).await;
    assert_eq!(video_likes(&settings).await, 3);

    // Redis restarts from the snapshot: it still says it is whole, and one like.
    restore(&settings, &before_the_likes).await;
    assert_eq!(video_likes(&settings).await, 1);

    deliver(&projections, 3, &[liked_by(5)]).await;

    assert_eq!(
        video_likes(&settings).await,
        4,
        "rebuilt from Postgres before the new like was counted on top"
    );
}

#[tokio::test]
async fn a_quiet_projector_finds_a_redis_restored_from_an_older_snapshot_and_rebuilds_it() {
    let (settings, projections, _pool) = stores().await;
    anns_video(&projections).await;
    deliver(&projections, 0, &[liked_by(2)]).await;
    let before_the_likes = snapshot(&settings).await;
    deliver(&projections, 1, &[liked_by(3), liked_by(4)]).await;
    assert!(!projections.check_redis().await.unwrap(), "whole");

    restore(&settings, &before_the_likes).await;

    assert!(projections.check_redis().await.unwrap(), "rebuilding");
    projections.settled().await;
    assert_eq!(video_likes(&settings).await, 3);
    assert!(!projections.check_redis().await.unwrap(), "whole again");
}

/// A Redis server of the test's own, which it stops and starts again: it keeps its data on
/// disk (append-only file, every write synced), as compose's and `make run`'s Redis do.
struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            port,
            dir: tempfile::tempdir().unwrap(),
            process: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let process = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.process = Some(process);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// As if the machine went away: SIGKILL.
    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap();
            process.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_away_postgres_keeps_up_and_redis_is_rebuilt_once_it_answers() {
    let mut redis = OwnRedis::start();
    let (settings, projections, pool) = stores_on(&redis.url()).await;
    anns_video(&projections).await;
    deliver(&projections, 0, &[liked_by(2)]).await;

    redis.kill();
    // Each batch is carried out (a projector held up by Redis would retry it for ever, and
    // this would not return).
    deliver(&projections, 1, &[liked_by(3), liked_by(4)]).await;
    deliver(&projections, 3, &[liked_by(5)]).await;
    assert_eq!(like_rows(&pool).await, 4, "the lists kept up");

    // Redis comes back with what it had: one like. The next batch finds it behind, and it
    // is rebuilt before that batch is counted on top.
    redis.restart();
    assert_eq!(video_likes(&settings).await, 1);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    deliver(&projections, 4, &[liked_by(6)]).await;

    assert_eq!(video_likes(&settings).await, 5);
}

/// Two projectors racing over an aggregate (a rebalance, a topic given more partitions): one
/// applied the unlike (2) and another the like again (3) to Postgres, and 3's Redis change
/// comes first. Redis must not apply it on top of 1 and then skip 2 as applied before: it
/// finds 2 missing, its models are no longer whole, and they are rebuilt from Postgres.
#[tokio::test]
async fn a_redis_change_that_comes_before_an_earlier_one_is_not_applied_and_redis_is_rebuilt() {
    let (settings, projections, _pool) = stores().await;
    projections.apply(liked(1)).await.unwrap();
    assert_eq!(counters(&settings).await, (1, 1, 1));

    let keys = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let like_again = projections.plan(&liked(3)).unwrap().unwrap();
    let change = like_again.redis_change().unwrap();
    let applied =
        infra::redis_store::apply_all_once(&mut redis, &keys, &[], &[("like/7:2", 3, change)])
            .await
            .unwrap();
    assert_eq!(applied.outcomes, [infra::redis_store::ApplyOnce::NotReady]);
    assert!(!applied.whole, "the models lack event 2");
    assert_eq!(counters(&settings).await, (1, 1, 1), "3 changed nothing");

    // Postgres has 1 and 2 (3 is the other projector's, not committed here): the next event
    // finds Redis not whole and rebuilds it from Postgres first.
    projections.apply(unliked(2)).await.unwrap();
    assert_eq!(counters(&settings).await, (0, 0, 0));
}

/// While another process rebuilds Redis (an operator's `rebuild-redis`, another projector),
/// a projector's batches go on in Postgres instead of waiting for the rebuild's lock; their
/// Redis changes are made, in order, once it is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_go_on_in_postgres_while_redis_is_rebuilt_elsewhere_and_reach_redis_after() {
    let (settings, projections, pool) = stores().await;
    anns_video(&projections).await;
    deliver(&projections, 0, &[liked_by(2)]).await;
    assert_eq!(video_likes(&settings).await, 1);

    // A rebuild under way elsewhere: its lock taken, its token in Redis.
    let rebuilder = pool.get().await.unwrap();
    rebuilder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&projector::rebuild::REBUILD_LOCK],
        )
        .await
        .unwrap();
    let base = infra::redis_store::Keys::new(&settings.redis);
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let () = redis::cmd("SET")
        .arg(base.rebuilding())
        .arg("elsewhere")
        .query_async(&mut redis)
        .await
        .unwrap();

    // Each batch returns (one waiting for the lock would not), its like listed in Postgres.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        deliver(&projections, 1, &[liked_by(3)]).await;
        deliver(&projections, 2, &[liked_by(4)]).await;
    })
    .await
    .expect("batches do not wait for the rebuild");
    assert_eq!(like_rows(&pool).await, 3);
    assert_eq!(
        video_likes(&settings).await,
        1,
        "no Redis change during the rebuild"
    );

    // The rebuild ends (here without a new generation): the next batch makes the deferred
    // ones first, in order, then its own.
    let () = redis::cmd("DEL")
        .arg(base.rebuilding())
        .query_async(&mut redis)
        .await
        .unwrap();
    rebuilder
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&projector::rebuild::REBUILD_LOCK],
        )
        .await
        .unwrap();
    deliver(&projections, 3, &[liked_by(5)]).await;
    assert_eq!(video_likes(&settings).await, 4);
    assert_eq!(like_rows(&pool).await, 4);
}

/// Models made by a build that kept the record of applied events as one hash: this build's
/// scripts would not find it (a repeat would count twice), so they are made again at start.
#[tokio::test]
async fn models_with_the_record_as_one_hash_are_rebuilt_before_anything_is_applied() {
    let (settings, projections, _pool) = stores().await;
    anns_video(&projections).await;
    projections.apply(liked(1)).await.unwrap();
    let before = infra::testing::current_keys(&settings.redis).await;
    let mut redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let () = redis::cmd("HSET")
        .arg(before.applied_as_one_hash())
        .arg("like/7:2")
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();

    // As the projector does when it starts.
    projections.restore_redis().await.unwrap();
    let after = infra::testing::current_keys(&settings.redis).await;
    assert!(after.generation() > before.generation(), "rebuilt");
    // The like counts once, a repeat of it too (the liker, never registered, has no card).
    assert_eq!(counters(&settings).await, (1, 0, 1));
    projections.apply(liked(1)).await.unwrap();
    assert_eq!(counters(&settings).await, (1, 0, 1));
}

/// A projector that finds Redis lost rebuilds it in the background: its own batches go on in
/// Postgres meanwhile (a rebuild reads every table, minutes on a large store), and their
/// Redis changes are made once the rebuild is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_rebuilding_redis_itself_goes_on_in_postgres_and_catches_redis_up_after() {
    let (settings, projections, pool) = stores().await;
    anns_video(&projections).await;
    deliver(&projections, 0, &[liked_by(2)]).await;

    // The rebuild's first read (of every user) waits while this transaction holds the table:
    // a rebuild of a large store, slowed down.
    let mut holder = pool.get().await.unwrap();
    let hold = holder.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Redis restarts without its data.
    infra::testing::wipe_redis(&settings.redis).await;

    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        deliver_only(&projections, 1, &[liked_by(3)]).await;
        deliver_only(&projections, 2, &[liked_by(4)]).await;
    })
    .await
    .expect("batches do not wait for the projector's own rebuild");
    assert_eq!(like_rows(&pool).await, 3, "the likes list kept up");
    assert!(
        projections.redis_behind().reason().is_some(),
        "Redis is said to be behind while it is rebuilt"
    );

    hold.rollback().await.unwrap();
    projections.settled().await;
    assert_eq!(video_likes(&settings).await, 3, "Redis caught up");
    assert_eq!(projections.redis_behind().reason(), None);
    deliver(&projections, 3, &[liked_by(5)]).await;
    assert_eq!(video_likes(&settings).await, 4, "and goes on from there");
}

/// A Redis that answers but refuses writes (full, at `maxmemory` with `noeviction`; the same
/// for `MISCONF`, `READONLY`, `LOADING`, `BUSY`) is a Redis away: the Postgres lists keep up,
/// the projector says Redis is behind, and Redis is caught up once it takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_refusing_writes_is_left_behind_while_postgres_keeps_up_then_caught_up() {
    let redis = OwnRedis::start();
    let (settings, projections, pool) = stores_on(&redis.url()).await;
    anns_video(&projections).await;
    deliver(&projections, 0, &[liked_by(2)]).await;
    assert_eq!(projections.redis_behind().reason(), None);

    let mut admin = infra::redis_store::connect(&settings.redis).await.unwrap();
    let full = |limit: &'static str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("noeviction")
            .arg("maxmemory")
            .arg(limit)
            .to_owned()
    };
    let () = full("1").query_async(&mut admin).await.unwrap();

    // A like, then a chat message, while Redis is full: each batch is carried out (one held
    // up by Redis would be retried for ever, and this would not return).
    deliver(&projections, 1, &[liked_by(3)]).await;
    let message = event(
        "conversation",
        "1:2",
        1,
        "MessageSent",
        json!({"message_id": 1, "from_user_id": 2, "to_user_id": 1, "content": "hi ann",
               "sent_at": 10}),
    );
    deliver(&projections, 2, &[message]).await;
    assert_eq!(like_rows(&pool).await, 2, "the likes list kept up");
    let messages: i64 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(messages, 1, "the message is listed");
    let behind = projections
        .redis_behind()
        .reason()
        .expect("Redis is behind");
    assert!(behind.contains("OOM"), "{behind}");

    let () = full("0").query_async(&mut admin).await.unwrap();
    // Batches leave Redis alone for 2 s after it failed.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    deliver(&projections, 3, &[liked_by(4)]).await;
    assert_eq!(video_likes(&settings).await, 3, "Redis caught up");
    assert_eq!(projections.redis_behind().reason(), None);
}

#[tokio::test]
async fn a_waiting_event_kept_by_a_racing_batch_is_released_by_the_aggregates_next_event() {
    let (settings, projections, pool) = stores().await;
    projections.apply(liked(1)).await.unwrap();
    projections.apply(unliked(2)).await.unwrap();
    // Two projectors raced over the aggregate (its events on two partitions): one kept 3 as
    // waiting while the other applied 2 without seeing it, and a repeat of 1 was kept too.
    let client = pool.get().await.unwrap();
    for event in [liked(3), liked(1)] {
        client
            .execute(
                "INSERT INTO waiting_events (aggregate_type, aggregate_id, sequence, event)
                 VALUES ('like', '7:2', $1, $2)",
                &[
                    &event.sequence,
                    &String::from_utf8(event.to_json()).unwrap(),
                ],
            )
            .await
            .unwrap();
    }

    assert_eq!(
        projections.apply(unliked(4)).await.unwrap(),
        Outcome::Applied,
        "3 is applied first, then 4"
    );

    assert_eq!(counters(&settings).await, (0, 0, 0));
    assert_eq!(
        waiting_rows(&pool).await,
        0,
        "3 released, the stale 1 removed"
    );
    assert!(projector::waiting::gaps(&pool).await.unwrap().is_empty());
}
