//! The relay against the real event store and broker.

use std::time::Duration;

use infra::envelope::PublishedEvent;
use infra::event_store::EventStore;
use infra::kafka::{ensure_topics, Topics};
use infra::outbox::{Backlog, Relay, RELAY_LOCK};
use infra::testing::{read_topic, TestSettings};
use sqlx::{Executor, PgPool};

/// The relay's lease in these tests: as in production.
const LEASE: Duration = Duration::from_secs(30);

async fn setup() -> (TestSettings, PgPool, Relay, String) {
    let (settings, store, relay, topic) = setup_leased(LEASE).await;
    (settings, store.pool().clone(), relay, topic)
}

/// An event store with its `user` topic, and a relay whose lock is leased for `lease`.
async fn setup_leased(lease: Duration) -> (TestSettings, EventStore, Relay, String) {
    let settings = TestSettings::new().await;
    let store = EventStore::connect(&settings.event_store).await.unwrap();
    let topic = Topics::new(&settings.kafka).for_aggregate("user");
    ensure_topics(&settings.kafka, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let relay = Relay::new(
        store.relay_pool(lease),
        store.doorbell().clone(),
        &settings.kafka,
        lease,
    )
    .unwrap();
    (settings, store, relay, topic)
}

async fn insert_event<'e>(
    executor: impl Executor<'e, Database = sqlx::Postgres>,
    aggregate_id: &str,
    sequence: i64,
) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('user', $1, $2, 'UserRegistered', '1', $3, '{}')",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .bind(serde_json::json!({"UserRegistered": {"name": format!("n{aggregate_id}-{sequence}")}}))
    .execute(executor)
    .await
    .unwrap();
}

fn ids(events: &[PublishedEvent]) -> Vec<String> {
    events.iter().map(|event| event.event_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_transaction_commits_late_is_published_too() {
    let (settings, pool, relay, topic) = setup().await;

    // The slow transaction queues its event first, so with the lower outbox id...
    let mut slow = pool.begin().await.unwrap();
    insert_event(&mut *slow, "1", 1).await;
    // ...but a faster one commits first, and is published first.
    insert_event(&pool, "2", 1).await;
    assert_eq!(relay.publish_batch().await.unwrap(), 1);

    slow.commit().await.unwrap();
    assert_eq!(relay.publish_batch().await.unwrap(), 1);
    assert_eq!(
        relay.publish_batch().await.unwrap(),
        0,
        "the queue is empty"
    );

    let events = read_topic(
        &settings.kafka,
        &topic,
        |events| events.len() >= 2,
        Duration::from_secs(10),
        Duration::from_millis(500),
    );
    let mut published = ids(&events);
    published.sort();
    assert_eq!(published, ["user/1/1", "user/2/1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_an_aggregate_are_published_in_order() {
    let (settings, pool, relay, topic) = setup().await;
    for sequence in 1..=40 {
        insert_event(&pool, "7", sequence).await;
        insert_event(&pool, &format!("other-{sequence}"), 1).await;
    }
    while relay.publish_batch().await.unwrap() > 0 {}

    let events = read_topic(
        &settings.kafka,
        &topic,
        |events| events.len() >= 80,
        Duration::from_secs(20),
        Duration::from_millis(500),
    );
    assert_eq!(events.len(), 80);
    let sevens: Vec<i64> = events
        .iter()
        .filter(|event| event.aggregate_id == "7")
        .map(|event| event.sequence)
        .collect();
    assert_eq!(sevens, (1..=40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_waits_while_another_is_publishing() {
    let (_settings, pool, relay, _topic) = setup().await;
    insert_event(&pool, "1", 1).await;

    let mut other_relay = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(RELAY_LOCK)
        .execute(&mut *other_relay)
        .await
        .unwrap();
    assert_eq!(relay.publish_batch().await.unwrap(), 0);
    other_relay.rollback().await.unwrap();

    assert_eq!(relay.publish_batch().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_published_holds_back_its_aggregate_only_until_released() {
    let (settings, pool, relay, topic) = setup().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('user', 'broken', 1, 'UserRegistered', '1', '\"not an event\"', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    insert_event(&pool, "fine", 1).await;
    insert_event(&pool, "broken", 2).await;

    while relay.publish_batch().await.unwrap() > 0 {}

    let queued: Vec<(String, i64, Option<String>)> =
        sqlx::query_as("SELECT aggregate_id, sequence, parked_because FROM outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert_eq!((queued[0].0.as_str(), queued[0].1), ("broken", 1));
    assert!(
        queued[0].2.is_some(),
        "the unpublishable event is parked with its reason"
    );
    assert_eq!(
        (queued[1].0.as_str(), queued[1].1, &queued[1].2),
        ("broken", 2, &None)
    );
    let published = |count: usize| {
        read_topic(
            &settings.kafka,
            &topic,
            |events| events.len() >= count,
            Duration::from_secs(10),
            Duration::from_millis(500),
        )
    };
    assert_eq!(ids(&published(1)), ["user/fine/1"]);

    // The operator mends the event and releases it: the aggregate follows, in order.
    pool.execute(
        "UPDATE events SET payload = '{\"UserRegistered\": {\"name\": \"mended\"}}'
          WHERE aggregate_id = 'broken' AND sequence = 1;
         UPDATE outbox SET parked_because = NULL;",
    )
    .await
    .unwrap();
    while relay.publish_batch().await.unwrap() > 0 {}
    let events = published(3);
    assert_eq!(events.len(), 3);
    let broken: Vec<String> = ids(&events)
        .into_iter()
        .filter(|id| id.contains("broken"))
        .collect();
    assert_eq!(broken, ["user/broken/1", "user/broken/2"]);
}

/// Several command APIs share one event store, and one relay publishes at a time: a command
/// committed by one API wakes the relay of another (a notification sent after the commit),
/// not only that API's own. The relay here never polls, so only a wake-up publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_committed_by_another_command_api_wakes_the_relay() {
    use domain::user::{User, UserCommand, UserName};

    let settings = TestSettings::new().await;
    let writer = EventStore::connect(&settings.event_store).await.unwrap();
    let publisher = EventStore::connect(&settings.event_store).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(
        writer
            .doorbell()
            .clone()
            .tell_other_relays(writer.connect_options().clone(), stop.clone()),
    );
    let relay = Relay::new(
        publisher.pool().clone(),
        publisher.doorbell().clone(),
        &settings.kafka,
        LEASE,
    )
    .unwrap()
    .polling_every(Duration::from_secs(3600));
    tokio::spawn(relay.run(stop.clone()));

    let users = writer.cqrs::<User>(());
    let command = UserCommand::Register {
        name: UserName::parse("woken").unwrap(),
    };
    users.execute("1", command).await.unwrap();
    let queued = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(writer.pool())
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while queued().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the other command API's commit never woke the relay"
        );
        // The relay may not have been listening yet when the command rang: ring again, as
        // the writer's next command would.
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.doorbell().ring();
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_topic_is_gone_makes_it_again_and_publishes_on() {
    let (settings, pool, relay, topic) = setup().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        relay
            .polling_every(Duration::from_millis(100))
            .run(stop.clone()),
    );
    insert_event(&pool, "1", 1).await;
    read_topic(
        &settings.kafka,
        &topic,
        |events| !events.is_empty(),
        Duration::from_secs(10),
        Duration::from_millis(500),
    );

    // The broker loses the topic (restarted without its storage, or deleted by hand).
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        infra::kafka::client_config(&settings.kafka)
            .create()
            .unwrap();
    admin
        .delete_topics(
            &[topic.as_str()],
            // The answer waits for the deletion to be done: an event published meanwhile
            // would go down with the topic.
            &rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    insert_event(&pool, "2", 1).await;

    let events = read_topic(
        &settings.kafka,
        &topic,
        |events| ids(events).contains(&"user/2/1".to_owned()),
        Duration::from_secs(30),
        Duration::from_millis(500),
    );
    assert!(ids(&events).contains(&"user/2/1".to_owned()));
    stop.cancel();
    running.await.unwrap();
}

/// The gauges of the backlog are read at every scrape, also while the broker is away and the
/// outbox grows by millions: the statement reads a few rows whatever the queue's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_is_read_from_the_ends_of_the_queue_however_long_it_is() {
    let (_settings, pool, _relay, _topic) = setup().await;
    assert_eq!(
        Backlog::read(&pool).await.unwrap(),
        Backlog {
            events: 0,
            oldest_age: Duration::ZERO,
            parked: 0
        }
    );
    // The first event of the queue is parked, and its aggregate's next event is held back
    // behind it: the backlog counts from the first publishable one.
    insert_event(&pool, "parked", 1).await;
    insert_event(&pool, "parked", 2).await;
    pool.execute(
        "UPDATE outbox SET parked_because = 'held' WHERE aggregate_id = 'parked' AND sequence = 1",
    )
    .await
    .unwrap();
    const QUEUED: i64 = 5_000;
    pool.execute(
        format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'user', 'queued-' || n, 1, 'UserRegistered', '1', '{{}}', '{{}}'
               FROM generate_series(1, {QUEUED}) n;
             UPDATE outbox SET parked_because = 'held' WHERE aggregate_id IN ('queued-7', 'queued-8');
             ANALYZE outbox;"
        )
        .as_str(),
    )
    .await
    .unwrap();

    let backlog = Backlog::read(&pool).await.unwrap();
    assert_eq!((backlog.events, backlog.parked), (QUEUED - 2, 3));

    let plan: (serde_json::Value,) = sqlx::query_as(&format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) {}",
        Backlog::STATEMENT
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    let rows_read = rows_read(&plan.0[0]["Plan"]);
    assert!(
        rows_read < 100.0,
        "the backlog read {rows_read} rows of {QUEUED}: {}",
        plan.0
    );
}

/// The rows every scan of a plan read (returned, and removed by its filter), over all its
/// loops.
fn rows_read(node: &serde_json::Value) -> f64 {
    let own = if node["Node Type"].as_str().unwrap_or("").contains("Scan") {
        let rows = |field: &str| node[field].as_f64().unwrap_or(0.0);
        (rows("Actual Rows") + rows("Rows Removed by Filter"))
            * node["Actual Loops"].as_f64().unwrap_or(1.0)
    } else {
        0.0
    };
    let children = node["Plans"]
        .as_array()
        .map_or(0.0, |plans| plans.iter().map(rows_read).sum());
    own + children
}

/// A relay that took the lock and then stopped answering (a paused machine, a network cut)
/// holds it no longer than its lease: Postgres ends its session, and another relay publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_takes_the_lock_and_goes_silent_holds_it_no_longer_than_its_lease() {
    let lease = Duration::from_secs(2);
    let (settings, store, relay, topic) = setup_leased(lease).await;
    // The silent relay: one of the relay's connections, the lock taken, then nothing.
    let silent_pool = store.relay_pool(lease);
    let mut silent = silent_pool.begin().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(&mut *silent)
        .await
        .unwrap();
    assert!(locked);
    insert_event(store.pool(), "after-the-silence", 1).await;

    assert_eq!(relay.publish_batch().await.unwrap(), 0, "the lock is held");
    let deadline = std::time::Instant::now() + lease + Duration::from_secs(10);
    loop {
        // A delivery slower than the short lease's half fails the batch: it is tried again.
        if relay
            .publish_batch()
            .await
            .is_ok_and(|published| published > 0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the silent relay still holds the lock past its lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = read_topic(
        &settings.kafka,
        &topic,
        |events| !events.is_empty(),
        Duration::from_secs(10),
        Duration::from_millis(500),
    );
    assert_eq!(ids(&events), ["user/after-the-silence/1"]);
    drop(silent);
}
