//! Where a consumer group stands on the topics the projector reads, partition by partition.

use std::time::Duration;

use infra::kafka::Topics;
use infra::settings::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const ASKING: Duration = Duration::from_secs(10);

/// One partition: the group's committed offset (0 before its first commit) and the end.
#[derive(Debug, Clone)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub end: i64,
}

impl Position {
    pub fn behind(&self) -> i64 {
        (self.end - self.committed).max(0)
    }
}

/// Asks the broker where `group` stands on the projector's topics (blocking calls).
pub struct Positions {
    consumer: BaseConsumer,
    topics: Vec<String>,
}

impl Positions {
    pub fn new(kafka: &KafkaSettings, group: &str) -> anyhow::Result<Self> {
        let names = Topics::new(kafka);
        Ok(Self {
            consumer: ClientConfig::new()
                .set("bootstrap.servers", &kafka.kafka_brokers)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .create()?,
            // The topics the projector reads (not `account`'s, which no read model follows).
            topics: projector::projections::Projections::aggregate_types()
                .iter()
                .map(|aggregate_type| names.for_aggregate(aggregate_type))
                .collect(),
        })
    }

    pub fn now(&self) -> anyhow::Result<Vec<Position>> {
        let mut positions = vec![];
        for topic in &self.topics {
            let metadata = self.consumer.fetch_metadata(Some(topic), ASKING)?;
            let mut list = TopicPartitionList::new();
            let mut ends = vec![];
            for partition in metadata
                .topics()
                .iter()
                .flat_map(|topic| topic.partitions())
            {
                let (_, end) = self
                    .consumer
                    .fetch_watermarks(topic, partition.id(), ASKING)?;
                list.add_partition(topic, partition.id());
                ends.push(end);
            }
            let committed = infra::kafka::committed_offsets(&self.consumer, list, ASKING)?;
            for (element, end) in committed.elements().iter().zip(ends) {
                positions.push(Position {
                    topic: topic.clone(),
                    partition: element.partition(),
                    committed: match element.offset() {
                        Offset::Offset(at) => at,
                        _ => 0,
                    },
                    end,
                });
            }
        }
        Ok(positions)
    }

    /// Messages published and not yet consumed by the group.
    pub fn behind(&self) -> anyhow::Result<i64> {
        Ok(self.now()?.iter().map(Position::behind).sum())
    }
}
