//! What the topics hold, and how far the projector has read them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use infra::kafka::{client_config, Topics};
use infra::settings::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// An offset per partition: `(topic, partition)` to the offset of the next message.
pub type Positions = BTreeMap<(String, i32), i64>;

/// The topics of every published aggregate type.
pub fn names(settings: &KafkaSettings) -> Vec<String> {
    let topics = Topics::new(settings);
    domain::published::AGGREGATE_TYPES
        .iter()
        .map(|aggregate_type| topics.for_aggregate(aggregate_type))
        .collect()
}

/// The topics the projector reads: every published aggregate type but `account`, whose events
/// (sign-ups, with what logins check) feed no read model.
pub fn projected(settings: &KafkaSettings) -> Vec<String> {
    let topics = Topics::new(settings);
    domain::published::AGGREGATE_TYPES
        .iter()
        .filter(|aggregate_type| **aggregate_type != "account")
        .map(|aggregate_type| topics.for_aggregate(aggregate_type))
        .collect()
}

fn consumer(settings: &KafkaSettings, group: &str) -> KafkaResult<BaseConsumer> {
    client_config(settings)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
}

/// Where each partition of `topics` ends now (topics not made yet have none).
pub fn ends(settings: &KafkaSettings, topics: &[String]) -> KafkaResult<Positions> {
    let consumer = consumer(settings, "douyin-verify")?;
    let mut ends = Positions::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer.fetch_watermarks(topic, partition.id(), TIMEOUT)?;
            ends.insert((topic.clone(), partition.id()), high);
        }
    }
    Ok(ends)
}

/// What consumer group `group` has committed for each partition of `ends` (0 for nothing).
/// Asked without joining the group: the projectors' assignments are not disturbed.
pub fn committed(
    settings: &KafkaSettings,
    group: &str,
    ends: &Positions,
) -> KafkaResult<Positions> {
    let consumer = consumer(settings, group)?;
    let mut partitions = TopicPartitionList::new();
    for (topic, partition) in ends.keys() {
        partitions.add_partition(topic, *partition);
    }
    let committed = infra::kafka::committed_offsets(&consumer, partitions, TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .map(|element| {
            let offset = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => 0,
            };
            ((element.topic().to_owned(), element.partition()), offset)
        })
        .collect())
}

/// An aggregate: its type and id.
pub type Aggregate = (String, String);

/// How far each aggregate's history is on the topics with nothing missing.
#[derive(Debug, Default)]
pub struct Held {
    /// Every event from 1 to this one has been seen.
    pub through: i64,
    /// Later events seen past a missing one (nearly always none).
    beyond: BTreeSet<i64>,
}

impl Held {
    fn saw(&mut self, sequence: i64) {
        if sequence <= self.through {
            return; // A repeat.
        }
        self.beyond.insert(sequence);
        while self.beyond.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }
}

/// For each aggregate, through which sequence the messages before `ends` hold its whole
/// history (a message lost in the middle stops it there), read from the beginning of every
/// partition. Blocking: run it off the async threads.
pub fn held_through(
    settings: &KafkaSettings,
    ends: &Positions,
) -> anyhow::Result<HashMap<Aggregate, i64>> {
    let consumer = consumer(settings, "douyin-verify")?;
    let mut partitions = TopicPartitionList::new();
    let mut left: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for ((topic, partition), end) in ends {
        if *end > 0 {
            partitions.add_partition_offset(topic, *partition, Offset::Beginning)?;
            left.insert((topic.clone(), *partition), *end);
        }
    }
    consumer.assign(&partitions)?;
    let mut held: HashMap<Aggregate, Held> = HashMap::new();
    while !left.is_empty() {
        let Some(message) = consumer.poll(TIMEOUT) else {
            anyhow::bail!(
                "the broker sent nothing for {TIMEOUT:?} with {} partitions left to read",
                left.len()
            );
        };
        let message = message?;
        let place = (message.topic().to_owned(), message.partition());
        let Some(&end) = left.get(&place) else {
            continue;
        };
        if message.offset() >= end {
            left.remove(&place);
            continue;
        }
        if message.offset() + 1 >= end {
            left.remove(&place);
        }
        // Only the fields that place an event in its aggregate's history.
        #[derive(serde::Deserialize)]
        struct Placed {
            aggregate_type: String,
            aggregate_id: String,
            sequence: i64,
        }
        match serde_json::from_slice::<Placed>(message.payload().unwrap_or_default()) {
            Ok(placed) => held
                .entry((placed.aggregate_type, placed.aggregate_id))
                .or_default()
                .saw(placed.sequence),
            Err(error) => tracing::warn!(
                topic = place.0,
                partition = place.1,
                offset = message.offset(),
                %error,
                "a message that is not an event"
            ),
        }
    }
    Ok(held
        .into_iter()
        .map(|(aggregate, held)| (aggregate, held.through))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::Held;

    fn held(sequences: &[i64]) -> i64 {
        let mut held = Held::default();
        for sequence in sequences {
            held.saw(*sequence);
        }
        held.through
    }

    #[test]
    fn a_history_is_held_only_up_to_its_first_missing_event() {
        assert_eq!(held(&[1, 2, 3]), 3);
        assert_eq!(held(&[1, 2, 2, 3, 1]), 3, "repeats change nothing");
        assert_eq!(held(&[1, 2, 4, 5]), 2, "3 is missing");
        assert_eq!(held(&[1, 3, 2, 4]), 4, "out of order, but whole");
        assert_eq!(held(&[2, 3]), 0, "1 is missing");
    }
}
