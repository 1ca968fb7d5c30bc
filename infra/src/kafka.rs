//! Kafka clients: one topic per aggregate type, keyed by aggregate id.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::error::KafkaResult;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::settings::KafkaSettings;

/// Topic names: `<KAFKA_TOPIC_PREFIX><aggregate type>`, e.g. `douyin.user`.
#[derive(Clone, Debug)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(settings: &KafkaSettings) -> Self {
        Self {
            prefix: settings.kafka_topic_prefix.clone(),
        }
    }

    pub fn for_aggregate(&self, aggregate_type: &str) -> String {
        format!("{}{}", self.prefix, aggregate_type)
    }

    /// The aggregate type whose events a topic carries.
    pub fn aggregate_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic.strip_prefix(self.prefix.as_str())
    }
}

pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.kafka_brokers);
    config
}

/// How long a delivery may take before it fails, and the relay retries its batch.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// A producer that keeps each partition in order across retries and waits for every replica.
pub fn producer(settings: &KafkaSettings) -> Result<FutureProducer, KafkaError> {
    producer_within(settings, DELIVERY_TIMEOUT)
}

/// [`producer`], whose deliveries fail after `delivery_timeout` (the relay's: shorter than the
/// lease of the lock it publishes under).
pub fn producer_within(
    settings: &KafkaSettings,
    delivery_timeout: Duration,
) -> Result<FutureProducer, KafkaError> {
    client_config(settings)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Java clients hash keys with murmur2; doing the same puts an aggregate on the
        // partition any Kafka tool expects.
        .set("partitioner", "murmur2_random")
        // Waiting a little for more events to join a request costs each event up to that
        // much at rest and saves Kafka and Postgres work under load (`KAFKA_LINGER_MS`, 2 ms;
        // the README has what 0 and 2 measured).
        .set("linger.ms", settings.kafka_linger_ms.to_string())
        // A delivery that fails surfaces within this time; the relay then retries the batch.
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().max(1).to_string(),
        )
        .create()
}

/// Settings of a consumer that stores an offset only once its message is handled, and
/// commits what is stored in the background, on rebalance and on close.
pub fn consumer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut config = client_config(settings);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Kafka answers a fetch as soon as data comes: the wait only bounds an idle fetch, so
        // it costs write-to-read nothing (`KAFKA_FETCH_WAIT_MS`, librdkafka's 500 ms by
        // default). A broker that polls its storage and answers only when the wait is over
        // (nisshi, this project's earlier local broker) makes it the floor of write-to-read:
        // there a short wait was needed, and handed back next to nothing of a backlog
        // (docs/performance.md).
        .set(
            "fetch.wait.max.ms",
            settings.kafka_fetch_wait_ms.to_string(),
        )
        // A member joining or leaving moves only the partitions that must move; the others go
        // on being consumed through the rebalance (the default, eager, stops them all).
        .set("partition.assignment.strategy", "cooperative-sticky")
        // A projector that died is noticed after this long (then its partitions move on);
        // Kafka's lowest allowed by default.
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000");
    config
}

/// Creates the topics that do not exist yet.
pub async fn ensure_topics(settings: &KafkaSettings, topics: &[String]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(settings).create()?;
    let min_insync_replicas = settings.kafka_replication_factor.clamp(1, 2).to_string();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                settings.kafka_partitions,
                TopicReplication::Fixed(settings.kafka_replication_factor),
            )
            // The topics are the public history of the system: keep every event, so that a
            // new consumer can read from the beginning.
            .set("retention.ms", "-1")
            // With acks=all, an event is acknowledged once this many replicas have it: two
            // where there are two or more, so losing one broker loses no acknowledged event.
            .set("min.insync.replicas", &min_insync_replicas)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(%topic, ?code, "could not create topic");
                })
            }
        }
    }
    Ok(())
}

/// What group `consumer`'s group has committed for `partitions` (a blocking call), asked again
/// while the broker's group coordinator is not ready: a fresh Kafka makes its offsets topic at
/// the first group's first question, and answers "not coordinator" until it has (seen on
/// Apache Kafka 4.4 for about a second). Other errors, and the coordinator still not ready at
/// `timeout`, are returned.
pub fn committed_offsets<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    partitions: TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<TopicPartitionList> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match consumer.committed_offsets(partitions.clone(), left) {
            Err(error) if coordinator_not_ready(&error) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            answer => return answer,
        }
    }
}

fn coordinator_not_ready(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::CoordinatorLoadInProgress
        )
    )
}
