//! Kafka clients: one topic per aggregate type, keyed by aggregate id.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

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
        .set("linger.ms", "2")
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
        // Kafka answers a fetch as soon as data comes; the wait only bounds an idle fetch. The
        // local broker (nisshi) answers only when the wait is over, so there it is the floor
        // of write-to-read; and it reads what it hands back within the wait, so a shorter wait
        // hands back next to nothing of a backlog. With the events' CloudEvents headers, a
        // backlog of 1.4 million events was projected at 16/s with 20 ms, 126/s with 40,
        // 314/s with 60, 5,000/s with 80 and 15,000/s with 100 (docs/performance.md): a
        // projector that was down could not catch up. `KAFKA_FETCH_WAIT_MS`, 100 by default.
        .set(
            "fetch.wait.max.ms",
            settings.kafka_fetch_wait_ms.to_string(),
        )
        // A projector that died is noticed after this long (then its partitions move on);
        // Kafka's lowest allowed by default.
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000");
    config
}

/// Creates the topics that do not exist yet.
pub async fn ensure_topics(settings: &KafkaSettings, topics: &[String]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(settings).create()?;
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
