//! What the tests share: settings of their own, a publisher of hand-made events, and a
//! catch-up run as `analytics catch-up` makes it.

use std::time::Duration;

use analytics::consumer::Progress;
use analytics::{Analytics, AnalyticsSettings, Settings};
use infra::envelope::PublishedEvent;
use infra::kafka::{ensure_topics, producer, Topics};
use infra::settings::{secret, KafkaSettings};
use infra::testing::{fresh_database, unique};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

/// The aggregate types of docs/events.md: a topic each.
pub const AGGREGATE_TYPES: &[&str] = &[
    "account",
    "user",
    "video",
    "like",
    "comment",
    "follow",
    "conversation",
];

/// Topics of the test's own, on the test broker.
pub fn kafka() -> KafkaSettings {
    KafkaSettings {
        kafka_brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        kafka_topic_prefix: format!("{}.", unique("analytics-")),
        kafka_partitions: 2,
        kafka_replication_factor: 1,
        kafka_fetch_wait_ms: infra::settings::DEFAULT_KAFKA_FETCH_WAIT_MS,
        kafka_linger_ms: infra::settings::DEFAULT_KAFKA_LINGER_MS,
    }
}

/// A fresh analytics database and consumer group, reading `kafka`'s topics.
pub async fn settings(kafka: KafkaSettings) -> Settings {
    Settings {
        kafka,
        analytics: AnalyticsSettings {
            analytics_database_url: secret(&fresh_database("analytics").await),
            analytics_group: unique("analytics-"),
        },
    }
}

/// One run of `analytics catch-up`: a consumer of its own, dropped at the end as the
/// process would be.
pub async fn catch_up(settings: &Settings) -> Progress {
    let analytics = Analytics::connect(settings)
        .await
        .expect("analytics connects");
    let progress = tokio::time::timeout(
        Duration::from_secs(120),
        analytics.catch_up(&CancellationToken::new()),
    )
    .await
    .expect("caught up within two minutes")
    .expect("catching up works");
    assert!(progress.caught_up, "{progress:?}");
    progress
}

/// An event of the contract's first version.
pub use infra::testing::published_event as event;

/// Publishes as the relay does: to the aggregate type's topic, keyed by aggregate id.
pub struct Publisher {
    producer: FutureProducer,
    topics: Topics,
}

impl Publisher {
    pub async fn new(kafka: &KafkaSettings) -> Self {
        let topics = Topics::new(kafka);
        let names: Vec<String> = AGGREGATE_TYPES
            .iter()
            .map(|aggregate_type| topics.for_aggregate(aggregate_type))
            .collect();
        ensure_topics(kafka, &names)
            .await
            .expect("the test topics can be made");
        Self {
            producer: producer(kafka).expect("a producer can be made"),
            topics,
        }
    }

    pub async fn events(&self, events: &[PublishedEvent]) {
        for event in events {
            self.raw(&event.aggregate_type, &event.aggregate_id, &event.to_json())
                .await;
        }
    }

    /// Any bytes, as a buggy or hostile producer could send.
    pub async fn raw(&self, aggregate_type: &str, key: &str, value: &[u8]) {
        let topic = self.topics.for_aggregate(aggregate_type);
        self.producer
            .send(
                FutureRecord::to(&topic).key(key).payload(value),
                Duration::from_secs(10),
            )
            .await
            .expect("the broker takes the message");
    }
}
