//! The consumer loop: batches of the messages the broker has ready, in order, their offsets
//! stored only once their events are applied (or dead-lettered), stored offsets committed in
//! the background, before partitions are taken away, and on shutdown.
//!
//! A message no projection can read is dead-lettered, and so is every later message of its
//! aggregate until `projector redrive` has applied them (see [`crate::dead_letters`]).

use std::future::Future;

use futures::FutureExt;
use infra::backoff::Backoff;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientContext, Message};
use tokio_util::sync::CancellationToken;

use crate::dead_letters::Received;
use crate::projections::{InPostgres, Item, Projections};
use crate::span::Span;

/// Commits the offsets of the messages handled so far when partitions are revoked. Revokes
/// run in the task that polls, between batches or while one is being collected: a batch may
/// then still hold messages of a revoked partition. They are applied all the same, their
/// offsets are not stored (librdkafka refuses offsets of partitions no longer assigned), and
/// the new owner's repeat of them changes nothing (both stores drop repeats).
pub struct CommitOnRevoke;

/// Also turns librdkafka's statistics (every [`STATISTICS_INTERVAL`]) into the consumer-lag
/// gauge, per partition: 0 for a partition another projector of the group owns, so that the
/// group's lag is the sum over its projectors.
impl ClientContext for CommitOnRevoke {
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, partitions) in &statistics.topics {
            for (partition, stats) in &partitions.partitions {
                // -1 is librdkafka's partition for messages not yet given one.
                if *partition < 0 {
                    continue;
                }
                metrics::gauge!(
                    infra::metrics::CONSUMER_LAG,
                    "topic" => topic.clone(),
                    "partition" => partition.to_string(),
                )
                .set(stats.consumer_lag.max(0) as f64);
            }
        }
    }
}

/// How often librdkafka reports its statistics (the consumer lag among them).
pub const STATISTICS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            commit(consumer);
        }
    }
}

pub type EventConsumer = StreamConsumer<CommitOnRevoke>;

fn commit<C: Consumer<CommitOnRevoke>>(consumer: &C) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing handled since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, "could not commit offsets"),
    }
}

/// Messages handled as one batch at most: those already fetched when the first arrives. A
/// quiet stream makes batches of one, so batching costs no latency; a burst is applied with
/// one read-store commit (and one Redis round trip) per batch instead of per event.
/// A projector catching up with a backlog of 400,000 likes (`BENCH_SCALE=small
/// BENCH_ONLY=catch-up BENCH_CATCH_UP_EVENTS=400000 make bench`, 2026-12-07) consumed 12,100-
/// 13,400 events/s with batches of 256, 15,200 with 1,024, 21,300-21,400 with 2,048 and
/// 18,200 with 4,096: bigger batches spread their fixed costs, up to where one batch's Redis
/// scripts and transaction grow long. Then a batch's Postgres and Redis steps ran one after
/// the other; run side by side (one batch in each, see [`EventLoop::run`]), a backlog of a
/// million likes on the full data set was consumed at 18,400 events/s instead of 10,900
/// (`BENCH_ONLY=catch-up make bench`, 2026-12-07), the machine 90% busy: per 1,000 events,
/// Redis 28 ms of CPU, Postgres 28, the projector 13, Kafka 6.
const MAX_BATCH: usize = 2_048;

/// How often a quiet projector checks that Redis still holds what it applied (a batch checks
/// it as it comes).
const REDIS_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the event loop ended.
#[derive(Debug)]
pub enum Ended {
    /// Told to stop; what it applied is committed.
    Stopped,
    /// Its consumer met an error librdkafka calls fatal: it can consume no more.
    Fatal(KafkaError),
}

pub struct EventLoop<'a> {
    pub consumer: &'a EventConsumer,
    pub projections: &'a Projections,
}

/// A batch applied to Postgres, on its way to Redis.
struct Pending {
    batch: InPostgres,
    /// Its messages: topic, partition and offset.
    messages: Vec<(String, i32, i64)>,
    /// Each traced write's trace goes on in a span of the batch that applies its event.
    traces: Vec<tracing::Span>,
    started: std::time::Instant,
}

impl EventLoop<'_> {
    /// Two stages, joined by a queue of one: a batch is applied to Postgres while the batch
    /// before it is made in Redis, and the command APIs told of it. Batches reach Redis in
    /// the order they reached Postgres.
    pub async fn run(&self, stop: &CancellationToken) -> Ended {
        let (to_redis, in_postgres) = tokio::sync::mpsc::channel(1);
        let (made, batches_made) = tokio::sync::watch::channel(0u64);
        let (ended, ()) = tokio::join!(
            self.to_postgres(to_redis, batches_made, stop),
            self.to_redis(in_postgres, made, stop)
        );
        commit(self.consumer);
        ended
    }

    /// The first stage: receives batches and applies them to Postgres. `made`: how many
    /// batches the second stage has made in Redis.
    async fn to_postgres(
        &self,
        to_redis: tokio::sync::mpsc::Sender<Pending>,
        mut made: tokio::sync::watch::Receiver<u64>,
        stop: &CancellationToken,
    ) -> Ended {
        let mut sent = 0u64;
        // librdkafka reconnects by itself; an error it reports (the broker away, a topic
        // gone) comes back at once on the next call: wait between them, not spin.
        let mut backoff = Backoff::default();
        // Redis is checked to hold what Postgres does every so often, even while no event comes
        // (see [`Projections::check_redis`]).
        let mut check = tokio::time::interval(REDIS_CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                received = self.consumer.recv() => received,
                _ = check.tick() => {
                    // Once this process's batches applied to Postgres are in Redis too: else
                    // Redis would look behind by them, and be rebuilt for nothing.
                    let drained = tokio::select! {
                        drained = made.wait_for(|made| *made == sent) => drained.is_ok(),
                        _ = stop.cancelled() => return Ended::Stopped,
                    };
                    if !drained {
                        // The second stage stopped (told to).
                        return Ended::Stopped;
                    }
                    if let Err(error) = self.projections.check_redis().await {
                        tracing::warn!(%error, "could not check what Redis holds");
                    }
                    continue;
                }
                _ = stop.cancelled() => return Ended::Stopped,
            };
            let mut batch = match received {
                Ok(message) => {
                    backoff.reset();
                    vec![message]
                }
                // A broker this client cannot reach (one of several down, a coordinator moved):
                // librdkafka reconnects and finds the new leaders itself, and queues one such
                // report a try. Waiting after each would leave the reports, and the messages
                // behind them, in the queue for minutes (seen with two of three brokers
                // killed): they are passed at once.
                Err(error) if reconnecting(&error) => {
                    tracing::debug!(%error, "a broker is out of reach; librdkafka reconnects");
                    tokio::time::sleep(REPORT_PAUSE).await;
                    continue;
                }
                // This consumer is done for (a static member fenced by its own successor, say):
                // a new one must take its place. What it applied and did not commit is applied
                // again, and recognised as repeats.
                Err(error @ KafkaError::MessageConsumptionFatal(_)) => return Ended::Fatal(error),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff.next(), "could not receive from the broker");
                    if !backoff.wait(stop).await {
                        return Ended::Stopped;
                    }
                    continue;
                }
            };
            // Once the second stage has taken the batch before: Postgres is at most two
            // batches ahead of Redis (one being made there, this one). Meanwhile more
            // messages come, to join this batch.
            let permit = tokio::select! {
                permit = to_redis.reserve() => permit,
                _ = stop.cancelled() => return Ended::Stopped,
            };
            // The second stage stopped (told to): nothing more is applied.
            let Ok(permit) = permit else {
                return Ended::Stopped;
            };
            while batch.len() < MAX_BATCH {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(message),
                    Some(Err(error)) => {
                        tracing::warn!(%error, "could not receive from the broker");
                        break;
                    }
                    None => break,
                }
            }
            let started = std::time::Instant::now();
            let items: Vec<Item> = batch
                .iter()
                .map(|message| self.projections.read(Received::from(message)))
                .collect();
            let span = Span::of(
                batch
                    .iter()
                    .map(|message| (message.topic(), message.partition(), message.offset())),
            );
            let traces: Vec<tracing::Span> = batch.iter().filter_map(applying).collect();
            let Some(in_postgres) =
                retry(stop, || self.projections.to_postgres(&items, &span)).await
            else {
                return Ended::Stopped;
            };
            sent += 1;
            permit.send(Pending {
                batch: in_postgres,
                messages: batch
                    .iter()
                    .map(|message| {
                        (
                            message.topic().to_owned(),
                            message.partition(),
                            message.offset(),
                        )
                    })
                    .collect(),
                traces,
                started,
            });
        }
    }

    /// The second stage: makes each batch's Redis part, in order, then stores its offsets.
    /// A batch stopped before its Redis part is made leaves its offsets unstored.
    async fn to_redis(
        &self,
        mut in_postgres: tokio::sync::mpsc::Receiver<Pending>,
        made: tokio::sync::watch::Sender<u64>,
        stop: &CancellationToken,
    ) {
        while let Some(pending) = in_postgres.recv().await {
            let Some(outcomes) = retry(stop, || self.projections.to_redis(&pending.batch)).await
            else {
                return;
            };
            drop(pending.traces);
            // From the start of its Postgres step: the time queued behind the batch before
            // in Redis included.
            metrics::histogram!(infra::metrics::PROJECTOR_APPLY_DURATION)
                .record(pending.started.elapsed().as_secs_f64());
            metrics::histogram!(infra::metrics::PROJECTOR_BATCH_SIZE)
                .record(pending.messages.len() as f64);
            for ((topic, partition, offset), outcome) in pending.messages.iter().zip(outcomes) {
                metrics::counter!(infra::metrics::PROJECTOR_EVENTS, "outcome" => outcome.name())
                    .increment(1);
                tracing::debug!(topic, partition, offset, ?outcome, "message handled");
                // librdkafka stores the offset after it: the next one to read. (Storing
                // `offset + 1` here skipped a message at each restart.)
                if let Err(error) = self.consumer.store_offset(topic, *partition, *offset) {
                    tracing::warn!(%error, "could not store an offset");
                }
            }
            made.send_modify(|made| *made += 1);
        }
    }
}

/// A span for applying `message`, child of the span that published it, if the message
/// carries a trace context (`traceparent`).
fn applying(message: &BorrowedMessage<'_>) -> Option<tracing::Span> {
    if !infra::telemetry::traces_on() {
        return None;
    }
    let headers = message.headers()?;
    let context: std::collections::HashMap<String, String> = headers
        .iter()
        .filter(|header| matches!(header.key, "traceparent" | "tracestate"))
        .filter_map(|header| {
            let value = std::str::from_utf8(header.value?).ok()?;
            Some((header.key.to_owned(), value.to_owned()))
        })
        .collect();
    if !context.contains_key("traceparent") {
        return None;
    }
    let span = tracing::info_span!(
        "apply event",
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.destination.name = message.topic(),
        messaging.kafka.partition = message.partition(),
        messaging.kafka.offset = message.offset(),
    );
    infra::telemetry::continue_trace(&span, &context);
    Some(span)
}

/// Runs `attempt` until it succeeds, backing off between failures. None when stopped first.
async fn retry<T, E, F, Fut>(stop: &CancellationToken, mut attempt: F) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::default();
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff.next(), "read store unavailable");
                if !backoff.wait(stop).await {
                    return None;
                }
            }
        }
    }
}

/// Between two reports of a broker out of reach: enough not to spin on a flood of them.
const REPORT_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Whether `error` only reports a broker out of reach, which librdkafka handles itself.
fn reconnecting(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
        )
    )
}
