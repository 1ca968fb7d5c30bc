//! Events made by hand, at chosen times, on the test's own topics: the hourly numbers, the
//! top ten, messages that are not counted, repeats, and runs that take up where the last
//! stopped.

use analytics::store::{Hour, SkippedKind, TopVideo};
use analytics::{Report, Settings, Store};
use chrono::{DateTime, TimeDelta, Utc};
use infra::envelope::PublishedEvent;
use infra::settings::expose;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::support::{catch_up, event, kafka, settings, Publisher, AGGREGATE_TYPES};

/// Two hours, a few hours back: the events fall in them whenever the test runs.
fn hours() -> (DateTime<Utc>, DateTime<Utc>) {
    let first = analytics::facts::hour_of(Utc::now()) - TimeDelta::hours(3);
    (first, first + TimeDelta::hours(1))
}

fn like(video: i64, user: i64, sequence: i64, at: DateTime<Utc>) -> PublishedEvent {
    event(
        "like",
        &format!("{video}:{user}"),
        sequence,
        if sequence % 2 == 1 {
            "VideoLiked"
        } else {
            "VideoUnliked"
        },
        at,
        json!({"video_id": video, "user_id": user, "video_author_id": 1, "liked_at": 0}),
    )
}

/// The first hour: four sign-ups, a video, likes, a comment posted and deleted, a follow and
/// two messages. 20 events.
fn first_hour(at: DateTime<Utc>) -> Vec<PublishedEvent> {
    let mut events = Vec::new();
    for user in 1..=4 {
        events.push(event(
            "account",
            &format!("user{user}"),
            1,
            "AccountOpened",
            at,
            json!({"user_id": user}),
        ));
        events.push(event(
            "user",
            &user.to_string(),
            1,
            "UserRegistered",
            at,
            json!({"name": format!("user{user}")}),
        ));
    }
    events.push(event(
        "video",
        "100",
        1,
        "VideoPublished",
        at,
        json!({"author_id": 1, "title": "cats", "video_key": "videos/100.mp4", "cover_key": null, "published_at": 0}),
    ));
    // Video 100: three likes, one taken back; video 102: two likes. Both +2, 100 first (more
    // likes given).
    for user in 1..=3 {
        events.push(like(100, user, 1, at));
    }
    events.push(like(100, 3, 2, at));
    events.push(like(102, 1, 1, at));
    events.push(like(102, 2, 1, at));
    events.push(event(
        "comment",
        "500",
        1,
        "CommentPosted",
        at,
        json!({"video_id": 100, "video_author_id": 1, "user_id": 2, "content": "hi", "posted_at": 0}),
    ));
    // Deleted by the video's author: user 1 acted.
    events.push(event(
        "comment",
        "500",
        2,
        "CommentDeleted",
        at,
        json!({"video_id": 100, "deleted_by": 1}),
    ));
    events.push(event(
        "follow",
        "3:1",
        1,
        "UserFollowed",
        at,
        json!({"follower_id": 3, "followee_id": 1, "followed_at": 0}),
    ));
    for (sequence, from, to) in [(1, 2, 1), (2, 1, 2)] {
        events.push(event(
            "conversation",
            "1:2",
            sequence,
            "MessageSent",
            at,
            json!({"message_id": sequence, "from_user_id": from, "to_user_id": to, "content": "hey", "sent_at": sequence}),
        ));
    }
    events
}

fn first_hour_numbers(hour: DateTime<Utc>) -> Hour {
    Hour {
        hour,
        events: 20,
        videos_published: 1,
        likes: 5,
        unlikes: 1,
        net_likes: 4,
        comments_posted: 1,
        comments_deleted: 1,
        follows: 1,
        unfollows: 0,
        messages_sent: 2,
        sign_ups: 4,
        // User 4 only signed up: that is a write too.
        active_users: 4,
        top_videos: vec![
            TopVideo {
                video_id: 100,
                net_likes: 2,
                likes: 3,
                unlikes: 1,
            },
            TopVideo {
                video_id: 102,
                net_likes: 2,
                likes: 2,
                unlikes: 0,
            },
        ],
    }
}

/// The second hour: a video, likes given and taken back on the first hour's videos, twelve
/// videos liked 1 to 12 times, an unfollow and a message. 85 events.
fn second_hour(at: DateTime<Utc>) -> Vec<PublishedEvent> {
    let mut events = vec![event(
        "video",
        "101",
        1,
        "VideoPublished",
        at,
        json!({"author_id": 2, "title": "dogs", "video_key": "videos/101.mp4", "cover_key": "covers/101.jpg", "published_at": 1}),
    )];
    events.push(like(100, 3, 3, at)); // liked again
    events.push(like(100, 4, 1, at));
    events.push(like(100, 1, 2, at)); // taken back: 100 is +1 this hour
    events.push(like(102, 1, 2, at)); // 102 is -1 this hour: never in a top ten
    for video in 0..12 {
        for user in 0..=video {
            events.push(like(200 + video, 1000 + user, 1, at));
        }
    }
    events.push(event(
        "follow",
        "3:1",
        2,
        "UserUnfollowed",
        at,
        json!({"follower_id": 3, "followee_id": 1}),
    ));
    events.push(event(
        "conversation",
        "1:2",
        3,
        "MessageSent",
        at,
        json!({"message_id": 3, "from_user_id": 1, "to_user_id": 2, "content": "bye", "sent_at": 3}),
    ));
    events
}

fn second_hour_numbers(hour: DateTime<Utc>) -> Hour {
    Hour {
        hour,
        events: 85,
        videos_published: 1,
        likes: 80,
        unlikes: 2,
        net_likes: 78,
        comments_posted: 0,
        comments_deleted: 0,
        follows: 0,
        unfollows: 1,
        messages_sent: 1,
        sign_ups: 0,
        // Users 1 to 4, and the twelve likers 1000 to 1011.
        active_users: 16,
        // Video 211 had 12 likes, 210 had 11, ... 202 had 4: the ten best of the twelve.
        top_videos: (2..12)
            .rev()
            .map(|video| TopVideo {
                video_id: 200 + video,
                net_likes: video + 1,
                likes: video + 1,
                unlikes: 0,
            })
            .collect(),
    }
}

async fn report(settings: &Settings) -> Report {
    let store = Store::connect(expose(&settings.analytics.analytics_database_url))
        .await
        .expect("the analytics database answers");
    let (first, second) = hours();
    store
        .report(first - TimeDelta::hours(1), second + TimeDelta::hours(1))
        .await
        .expect("the report is read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_counted_in_the_hour_they_occurred_and_unknown_ones_skipped() {
    let kafka = kafka();
    let settings = settings(kafka.clone()).await;
    let publisher = Publisher::new(&kafka).await;
    let (first, second) = hours();
    publisher
        .events(&first_hour(first + TimeDelta::minutes(10)))
        .await;
    publisher
        .events(&second_hour(second + TimeDelta::minutes(59)))
        .await;
    // What a newer producer, or a broken one, may put on the topics.
    let mut newer = like(300, 1, 1, second);
    newer.event_version = 2;
    let mut shared = event("video", "101", 2, "VideoShared", second, json!({"by": 9}));
    shared.event_version = 1;
    let mut unreadable = like(301, 1, 1, second);
    unreadable.payload.remove("video_id");
    publisher.events(&[newer, shared, unreadable]).await;
    publisher.raw("like", "x", b"not json").await;

    let progress = catch_up(&settings).await;
    assert_eq!(progress.outcome.messages, 20 + 85 + 4);
    assert_eq!(progress.outcome.applied, 20 + 85);
    assert_eq!(progress.outcome.skipped, 4);
    assert_eq!(progress.outcome.repeats, 0);

    let report = report(&settings).await;
    assert_eq!(
        report.hours,
        [first_hour_numbers(first), second_hour_numbers(second)]
    );
    assert_eq!(report.latest, Some(second));
    let skipped: Vec<(String, Option<i64>, i64)> = report
        .skipped
        .iter()
        .map(
            |SkippedKind {
                 event_type,
                 event_version,
                 messages,
                 ..
             }| { (event_type.clone(), *event_version, *messages) },
        )
        .collect();
    assert_eq!(
        skipped,
        [
            ("(not an event)".to_owned(), None, 1),
            ("VideoLiked".to_owned(), Some(1), 1),
            ("VideoLiked".to_owned(), Some(2), 1),
            ("VideoShared".to_owned(), Some(1), 1),
        ]
    );
    let table = report.to_string();
    assert!(
        table.contains("211: +12, 210: +11, 209: +10"),
        "the top ten is printed: {table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_resume_and_repeats_count_once() {
    let kafka = kafka();
    let settings = settings(kafka.clone()).await;
    let publisher = Publisher::new(&kafka).await;
    let (first, _) = hours();
    let events = first_hour(first);
    publisher.events(&events).await;

    let progress = catch_up(&settings).await;
    assert_eq!(
        (progress.outcome.messages, progress.outcome.applied),
        (20, 20)
    );
    let counted = report(&settings).await;
    assert_eq!(counted.hours, [first_hour_numbers(first)]);

    // A second run starts where the first committed: nothing to read.
    let progress = catch_up(&settings).await;
    assert_eq!(progress.outcome.messages, 0, "{progress:?}");
    assert_eq!(report(&settings).await, counted);

    // The relay publishing again what it had published (it died before deleting its outbox
    // rows), then one new message.
    publisher.events(&events[..5]).await;
    let message = event(
        "conversation",
        "1:2",
        3,
        "MessageSent",
        first,
        json!({"message_id": 3, "from_user_id": 4, "to_user_id": 1, "content": "late", "sent_at": 3}),
    );
    publisher.events(std::slice::from_ref(&message)).await;
    let progress = catch_up(&settings).await;
    assert_eq!(
        (
            progress.outcome.messages,
            progress.outcome.applied,
            progress.outcome.repeats
        ),
        (6, 1, 5),
        "{progress:?}"
    );
    let mut expected = first_hour_numbers(first);
    expected.events += 1;
    expected.messages_sent += 1;
    let counted = report(&settings).await;
    assert_eq!(
        counted.hours,
        [expected.clone()],
        "user 4 was active already"
    );

    // Every message delivered again, as to a group whose offsets were lost or rewound.
    rewind(&settings);
    let progress = catch_up(&settings).await;
    assert_eq!(
        (
            progress.outcome.messages,
            progress.outcome.applied,
            progress.outcome.repeats
        ),
        (26, 0, 26),
        "{progress:?}"
    );
    assert_eq!(report(&settings).await, counted);
}

/// Moves the group's committed offsets back to the start of every partition (with no member
/// in the group, as an operator would with `kafka-consumer-groups --reset-offsets`).
fn rewind(settings: &Settings) {
    let consumer: BaseConsumer = infra::kafka::client_config(&settings.kafka)
        .set("group.id", &settings.analytics.analytics_group)
        .create()
        .expect("a consumer can be made");
    let topics = infra::kafka::Topics::new(&settings.kafka);
    let mut offsets = TopicPartitionList::new();
    for aggregate_type in AGGREGATE_TYPES {
        for partition in 0..settings.kafka.kafka_partitions {
            offsets
                .add_partition_offset(
                    &topics.for_aggregate(aggregate_type),
                    partition,
                    Offset::Offset(0),
                )
                .expect("a valid offset");
        }
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .expect("the broker takes the offsets");
}
