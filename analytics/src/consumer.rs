//! Reading the topics: every topic under `KAFKA_TOPIC_PREFIX`, from the beginning, in a
//! consumer group of our own, at least once.
//!
//! The at-least-once pattern of librdkafka: offsets are not stored as messages are handed to
//! us (`enable.auto.offset.store=false`) but only once the transaction that counted them has
//! committed; what is stored is committed in the background, when partitions are taken away,
//! and on the way out. A crash between the two reads the batch again, and the database drops
//! it as repeats (see [`crate::tally::Seen`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use infra::backoff::Backoff;
use infra::kafka::client_config;
use infra::settings::{expose, KafkaSettings};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::facts::{Incoming, Position};
use crate::store::{Outcome, Store};
use crate::{Error, Settings};

/// How long a call to the broker (metadata, watermarks, committed offsets) may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages counted in one transaction at most: those already fetched when the first comes.
/// Catching up on a long history costs a few statements per batch, not per event; a quiet
/// topic makes batches of one, so batching adds no delay.
const MAX_BATCH: usize = 1000;

/// How often catching up checks what the group has committed (another member may be reading
/// some partitions) and says how far it is.
const CATCH_UP_TICK: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Logs offsets the broker did not take: those messages will be read again after a restart
/// or rebalance (and dropped as repeats), so it is worth a warning, not more.
pub struct LogCommits;

impl ClientContext for LogCommits {}

impl ConsumerContext for LogCommits {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(partitions = offsets.count(), "offsets committed"),
            // Nothing stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(
                %error,
                offsets = ?offsets.to_topic_map(),
                "offsets not committed: their messages will be read again"
            ),
        }
    }

    /// Commits what was counted before the partitions go to another member, which would
    /// otherwise start from the last background commit (and drop up to a second of repeats).
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            // The outcome is logged by `commit_callback`.
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
        }
    }
}

type Kafka = StreamConsumer<LogCommits>;

/// `(topic, partition)` to an offset: the next message to read, or a partition's end.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// How a consumption ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub outcome: Outcome,
    /// Catching up: whether every partition was read to the end it had when it started
    /// (false when stopped first). Always false for [`Analytics::run`].
    pub caught_up: bool,
}

pub struct Analytics {
    kafka: KafkaSettings,
    group: String,
    consumer: Arc<Kafka>,
    store: Store,
}

/// The consumer's settings, spelled out here rather than taken from the services: this crate
/// is the example of what a consumer of the topics needs.
fn consumer_config(kafka: &KafkaSettings, group: &str) -> ClientConfig {
    let mut config = client_config(kafka);
    config
        .set("group.id", group)
        // A new group reads every topic from its first event (they keep every event).
        .set("auto.offset.reset", "earliest")
        // At least once: store an offset only once its message is counted, commit what is
        // stored every second.
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.partition.eof", "false")
        // Topics of new aggregate types match the subscription's pattern: find them within
        // half a minute rather than librdkafka's five.
        .set("topic.metadata.refresh.interval.ms", "30000")
        // The local broker (nisshi) answers a fetch only once this wait is over: keep it short
        // enough for catching up to be quick, long enough for fetches to be full.
        .set("fetch.wait.max.ms", "100");
    config
}

/// The subscription: a librdkafka pattern (a leading `^`) matching every topic under the
/// prefix, so that topics of aggregate types added later are read too.
pub fn topic_pattern(prefix: &str) -> String {
    let mut pattern = String::from("^");
    for c in prefix.chars() {
        if r"\.^$|?*+()[]{}".contains(c) {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str(".+");
    pattern
}

impl Analytics {
    /// Connects to the analytics database (migrating it) and makes the consumer; joins the
    /// group only when it starts reading.
    pub async fn connect(settings: &Settings) -> Result<Self, Error> {
        let store = Store::connect(expose(&settings.analytics.analytics_database_url)).await?;
        let consumer: Kafka = consumer_config(&settings.kafka, &settings.analytics.analytics_group)
            .create_with_context(LogCommits)?;
        Ok(Self {
            kafka: settings.kafka.clone(),
            group: settings.analytics.analytics_group.clone(),
            consumer: Arc::new(consumer),
            store,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Consumes until `stop`, then commits what it counted.
    #[tracing::instrument(skip_all, fields(group = %self.group))]
    pub async fn run(&self, stop: &CancellationToken) -> Result<Progress, Error> {
        self.subscribe()?;
        tracing::info!("counting until stopped");
        self.consume(stop, None).await
    }

    /// Consumes until every partition under the prefix has been read to where it ended when
    /// this began (or `stop`), then commits what it counted. A run that finds the group
    /// already there reads nothing.
    #[tracing::instrument(skip_all, fields(group = %self.group))]
    pub async fn catch_up(&self, stop: &CancellationToken) -> Result<Progress, Error> {
        let (starts, ends) = self
            .blocking(watermarks(self.kafka.kafka_topic_prefix.clone()))
            .await??;
        let mut target = CatchUp {
            positions: self.blocking(committed(ends.clone())).await??,
            ends,
            started: Instant::now(),
            last_said: Instant::now(),
        };
        // A partition whose first messages were removed (retention) starts past them.
        for (partition, start) in starts {
            target.advance(partition, start);
        }
        if target.reached() {
            tracing::info!(partitions = target.ends.len(), "already caught up");
            return Ok(Progress {
                outcome: Outcome::default(),
                caught_up: true,
            });
        }
        tracing::info!(
            partitions = target.ends.len(),
            messages = target.left(),
            "catching up"
        );
        self.subscribe()?;
        self.consume(stop, Some(target)).await
    }

    fn subscribe(&self) -> Result<(), Error> {
        let pattern = topic_pattern(&self.kafka.kafka_topic_prefix);
        self.consumer.subscribe(&[&pattern])?;
        tracing::info!(%pattern, "subscribed");
        Ok(())
    }

    /// Runs a blocking call on the consumer (librdkafka's metadata and offset queries) off the
    /// async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Kafka) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let consumer = Arc::clone(&self.consumer);
        Ok(tokio::task::spawn_blocking(move || call(&consumer)).await?)
    }

    async fn consume(
        &self,
        stop: &CancellationToken,
        mut catch_up: Option<CatchUp>,
    ) -> Result<Progress, Error> {
        let mut progress = Progress::default();
        let mut backoff = Backoff::default();
        let mut tick = tokio::time::interval(CATCH_UP_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(target) = &mut catch_up {
                if target.reached() {
                    progress.caught_up = true;
                    break;
                }
            }
            let first = tokio::select! {
                received = self.consumer.recv() => received,
                _ = stop.cancelled() => break,
                _ = tick.tick(), if catch_up.is_some() => {
                    if let Some(target) = &mut catch_up {
                        self.refresh(target, &progress.outcome).await;
                    }
                    continue;
                }
            };
            let mut batch = match first {
                Ok(message) => {
                    backoff.reset();
                    vec![incoming(&message)]
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff.next(), "could not read from the broker");
                    if !backoff.wait(stop).await {
                        break;
                    }
                    continue;
                }
            };
            while batch.len() < MAX_BATCH {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(incoming(&message)),
                    // The batch is counted as it is; the next turn backs off if this lasts.
                    Some(Err(error)) => {
                        tracing::warn!(%error, "could not read from the broker");
                        break;
                    }
                    None => break,
                }
            }
            let Some(outcome) = self.apply(&batch, stop).await else {
                break;
            };
            progress.outcome += outcome;
            for Incoming { position, .. } in &batch {
                // Refused for a partition taken away meanwhile: its new owner reads the
                // message again and drops it as a repeat.
                if let Err(error) =
                    self.consumer
                        .store_offset(&position.topic, position.partition, position.offset)
                {
                    tracing::debug!(%error, ?position, "offset not stored");
                }
                if let Some(target) = &mut catch_up {
                    target.handled(position);
                }
            }
        }
        // What was counted is committed before leaving, so the next run starts after it.
        match self
            .blocking(|consumer| consumer.commit_consumer_state(CommitMode::Sync))
            .await?
        {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "could not commit the last offsets"),
        }
        tracing::info!(?progress, "stopped reading");
        Ok(progress)
    }

    /// Counts a batch, retrying while the database fails: the partitions wait, nothing is
    /// skipped. None when stopped first (the batch's offsets must not be stored).
    async fn apply(&self, batch: &[Incoming], stop: &CancellationToken) -> Option<Outcome> {
        let mut backoff = Backoff::default();
        loop {
            match self.store.apply(batch).await {
                Ok(outcome) => return Some(outcome),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff.next(), "could not count a batch");
                    if !backoff.wait(stop).await {
                        return None;
                    }
                }
            }
        }
    }

    /// What the group committed (another member's partitions), and a word on progress.
    async fn refresh(&self, target: &mut CatchUp, outcome: &Outcome) {
        match self.blocking(committed(target.ends.clone())).await {
            Ok(Ok(committed)) => {
                for (partition, offset) in committed {
                    target.advance(partition, offset);
                }
            }
            Ok(Err(error)) => tracing::debug!(%error, "could not read the group's offsets"),
            Err(error) => tracing::debug!(%error, "could not read the group's offsets"),
        }
        if target.last_said.elapsed() >= PROGRESS_EVERY {
            target.last_said = Instant::now();
            tracing::info!(
                messages_left = target.left(),
                ?outcome,
                elapsed = ?target.started.elapsed(),
                "catching up"
            );
        }
    }
}

fn incoming<M: Message>(message: &M) -> Incoming {
    Incoming::read(
        Position {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        },
        message.payload(),
    )
}

/// Where catching up stops: each partition's end when it began.
struct CatchUp {
    ends: Offsets,
    /// The next offset to read in each partition: handled by us, or committed by the group.
    positions: Offsets,
    started: Instant,
    last_said: Instant,
}

impl CatchUp {
    fn handled(&mut self, position: &Position) {
        self.advance(
            (position.topic.clone(), position.partition),
            position.offset + 1,
        );
    }

    fn advance(&mut self, partition: (String, i32), next: i64) {
        if self.ends.contains_key(&partition) {
            let position = self.positions.entry(partition).or_default();
            *position = (*position).max(next);
        }
    }

    fn reached(&self) -> bool {
        self.left() == 0
    }

    /// Messages left before the ends.
    fn left(&self) -> i64 {
        self.ends
            .iter()
            .map(|(partition, end)| {
                (end - self.positions.get(partition).copied().unwrap_or(0)).max(0)
            })
            .sum()
    }
}

/// Where each partition of each topic under `prefix` starts and ends now.
fn watermarks(prefix: String) -> impl FnOnce(&Kafka) -> KafkaResult<(Offsets, Offsets)> {
    move |consumer| {
        let metadata = consumer.fetch_metadata(None, BROKER_TIMEOUT)?;
        let (mut starts, mut ends) = (Offsets::new(), Offsets::new());
        for topic in metadata.topics() {
            if !topic.name().starts_with(&prefix) || topic.error().is_some() {
                continue;
            }
            for partition in topic.partitions() {
                let (low, high) =
                    consumer.fetch_watermarks(topic.name(), partition.id(), BROKER_TIMEOUT)?;
                let key = (topic.name().to_owned(), partition.id());
                starts.insert(key.clone(), low);
                ends.insert(key, high);
            }
        }
        Ok((starts, ends))
    }
}

/// What the group has committed for the partitions of `ends` (none: not there).
fn committed(ends: Offsets) -> impl FnOnce(&Kafka) -> KafkaResult<Offsets> {
    move |consumer| {
        let mut partitions = TopicPartitionList::new();
        for (topic, partition) in ends.keys() {
            partitions.add_partition(topic, *partition);
        }
        let committed = infra::kafka::committed_offsets(consumer, partitions, BROKER_TIMEOUT)?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => {
                    Some(((element.topic().to_owned(), element.partition()), offset))
                }
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_matches_the_prefix_literally() {
        assert_eq!(topic_pattern("douyin."), r"^douyin\..+");
        assert_eq!(topic_pattern("a+b-"), r"^a\+b-.+");
    }

    #[test]
    fn catching_up_ends_at_every_partitions_end() {
        let key = |p: i32| ("t".to_owned(), p);
        let mut target = CatchUp {
            ends: Offsets::from([(key(0), 2), (key(1), 1)]),
            positions: Offsets::new(),
            started: Instant::now(),
            last_said: Instant::now(),
        };
        assert_eq!(target.left(), 3);
        target.handled(&Position {
            topic: "t".to_owned(),
            partition: 0,
            offset: 1,
        });
        assert_eq!(target.left(), 1);
        target.advance(key(1), 1);
        target.advance(key(7), 100);
        assert!(target.reached());
    }
}
