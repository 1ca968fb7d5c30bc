//! The consumer loop: one message at a time, its offset stored only once its event is applied
//! (or dead-lettered), stored offsets committed in the background, before partitions are
//! taken away, and on shutdown.
//!
//! A message no projection can read is dead-lettered, and so is every later message of its
//! aggregate (same topic and key) until `projector redrive` has applied them: applying them
//! past the gap would skip the dead one for good, since an aggregate's applied sequence only
//! goes up.

use std::collections::HashSet;
use std::future::Future;

use futures::FutureExt;
use infra::backoff::Backoff;
use infra::envelope::PublishedEvent;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Message};
use tokio_util::sync::CancellationToken;

use crate::projections::Projections;

/// Commits the offsets of the messages handled so far when partitions are revoked. Messages
/// are handled in the task that polls, so by the time this runs none is half done.
pub struct CommitOnRevoke;

impl ClientContext for CommitOnRevoke {}

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
const MAX_BATCH: usize = 256;

const HELD_BACK: &str = "an earlier event of its aggregate is dead-lettered";

/// A message's aggregate as the broker knows it: its topic and key.
type Aggregate = (String, Option<Vec<u8>>);

fn aggregate_of(message: &BorrowedMessage<'_>) -> Aggregate {
    (
        message.topic().to_owned(),
        message.key().map(<[u8]>::to_vec),
    )
}

pub struct EventLoop<'a> {
    pub consumer: &'a EventConsumer,
    pub projections: &'a Projections,
    pub dead_letters: &'a deadpool_postgres::Pool,
}

impl EventLoop<'_> {
    pub async fn run(&self, stop: &CancellationToken) {
        loop {
            let received = tokio::select! {
                received = self.consumer.recv() => received,
                _ = stop.cancelled() => break,
            };
            let mut batch = match received {
                Ok(message) => vec![message],
                Err(error) => {
                    tracing::warn!(%error, "could not receive from the broker");
                    continue;
                }
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
            if !self.handle(&batch, stop).await {
                break;
            }
            for message in &batch {
                if let Err(error) = self.consumer.store_offset_from_message(message) {
                    tracing::warn!(%error, "could not store an offset");
                }
            }
        }
        commit(self.consumer);
    }

    /// Applies the batch's events in order, retrying while a read store fails, and
    /// dead-letters what cannot be read together with what is held back behind it. Returns
    /// false when stopped first: the batch's offsets must not be stored.
    async fn handle(&self, batch: &[BorrowedMessage<'_>], stop: &CancellationToken) -> bool {
        let Some(mut held_back) = retry(stop, || self.held_back(batch)).await else {
            return false;
        };
        let mut planned = Vec::with_capacity(batch.len());
        for message in batch {
            let aggregate = aggregate_of(message);
            if held_back.contains(&aggregate) {
                if !self.dead_letter(message, HELD_BACK, stop).await {
                    return false;
                }
                continue;
            }
            let readable = PublishedEvent::from_json(message.payload().unwrap_or_default())
                .map_err(|error| error.to_string())
                .and_then(|event| match self.projections.plan(&event) {
                    Ok(plan) => Ok((event, plan)),
                    Err(error) => Err(error.to_string()),
                });
            match readable {
                Ok((event, Some(plan))) => planned.push((event, plan)),
                Ok((event, None)) => {
                    tracing::debug!(event_id = %event.event_id, "no read model follows it");
                }
                Err(reason) => {
                    if !self.dead_letter(message, &reason, stop).await {
                        return false;
                    }
                    held_back.insert(aggregate);
                }
            }
        }
        if planned.is_empty() {
            return true;
        }
        let planned: Vec<_> = planned.iter().map(|(event, plan)| (event, plan)).collect();
        let outcomes = retry(stop, || self.projections.execute(&planned)).await;
        if let Some(outcomes) = &outcomes {
            for ((event, _), outcome) in planned.iter().zip(outcomes) {
                tracing::debug!(event_id = %event.event_id, ?outcome, "event handled");
            }
        }
        outcomes.is_some()
    }

    /// The aggregates of `batch` with a dead-lettered event not yet redriven.
    async fn held_back(&self, batch: &[BorrowedMessage<'_>]) -> Result<HashSet<Aggregate>, String> {
        let keys: Vec<&[u8]> = batch.iter().filter_map(|message| message.key()).collect();
        let client = self.dead_letters.get().await.map_err(|e| e.to_string())?;
        let rows = client
            .query(
                "SELECT DISTINCT topic, key FROM dead_letters
                  WHERE redriven_at IS NULL AND key = ANY($1)",
                &[&keys],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// Keeps a message no projection can read (or one held back behind it), whole, so that
    /// it can be redriven.
    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &str,
        stop: &CancellationToken,
    ) -> bool {
        tracing::error!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            reason,
            "dead-lettering a message"
        );
        retry(stop, || async {
            let client = self.dead_letters.get().await.map_err(|e| e.to_string())?;
            client
                .execute(
                    "INSERT INTO dead_letters (topic, partition, \"offset\", key, payload, error)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &message.topic(),
                        &message.partition(),
                        &message.offset(),
                        &message.key(),
                        &message.payload(),
                        &reason,
                    ],
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })
        .await
        .is_some()
    }
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
