//! `make test` removes what its run made, and nothing of `make run`'s or of another run's.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use sqlx::{Connection, PgConnection};
use system_tests::leftovers::{remove, Removed, Services};

/// One of each thing a test run makes, under `prefix`.
async fn make_things(services: &Services, prefix: &str) {
    let mut postgres = PgConnection::connect(&format!("{}/postgres", services.postgres))
        .await
        .unwrap();
    sqlx::raw_sql(&format!(r#"CREATE DATABASE "{prefix}events""#))
        .execute(&mut postgres)
        .await
        .unwrap();

    let mut redis = redis::Client::open(services.redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(format!("{prefix}:likes"))
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();

    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &services.kafka_brokers);
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    let topic = format!("{prefix}.like");
    admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            // The answer waits for the topic to be made, so the remover finds it.
            &AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10))),
        )
        .await
        .unwrap();

    std::fs::create_dir_all(infra::testing::media_root().join(format!("{prefix}media"))).unwrap();
}

fn topics_under(services: &Services, prefix: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka_brokers)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    metadata
        .topics()
        .iter()
        .map(|topic| topic.name().to_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn a_runs_removal_takes_its_own_things_and_leaves_the_rest() {
    let services = Services::from_env();
    let id = uuid_like();
    let ours = format!("test-{id}-");
    // Another run, whose id begins as ours does.
    let theirs = format!("test-{id}0-");
    make_things(&services, &ours).await;
    make_things(&services, &theirs).await;

    let removed = remove(&services, &ours)
        .await
        .expect("the removal succeeds");
    assert_eq!(
        removed,
        Removed {
            databases: 1,
            redis_keys: 1,
            topics: 1,
            groups: 0,
            media_folders: 1,
        }
    );
    assert!(topics_under(&services, &ours).is_empty());

    // Theirs are all there, and go with their own removal.
    let theirs_removed = remove(&services, &theirs).await.unwrap();
    assert_eq!(theirs_removed.databases, 1);
    assert_eq!(theirs_removed.redis_keys, 1);
    assert_eq!(theirs_removed.topics, 1);
    assert_eq!(theirs_removed.media_folders, 1);

    // A prefix that is not one run's is refused, whatever it would match.
    for prefix in ["test-", "douyin", ""] {
        assert!(remove(&services, prefix).await.is_err(), "{prefix:?}");
    }
}

fn uuid_like() -> String {
    let unique = infra::testing::unique("");
    unique[unique.len() - 12..].to_owned()
}
