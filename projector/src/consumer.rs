//! The consumer loop: one message at a time, its offset stored only once its event is applied
//! (or dead-lettered), stored offsets committed in the background, before partitions are
//! taken away, and on shutdown.
//!
//! A message no projection can read is dead-lettered, and so is every later message of its
//! aggregate (same topic and key) until `projector redrive` has applied them: applying them
//! past the gap would skip the dead one for good, since an aggregate's applied sequence only
//! goes up.

use std::future::Future;

use infra::backoff::Backoff;
use infra::envelope::PublishedEvent;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Message};
use tokio_util::sync::CancellationToken;

use crate::projections::{ProjectionError, Projections};

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
            let message = match received {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "could not receive from the broker");
                    continue;
                }
            };
            if !self.handle(&message, stop).await {
                break;
            }
            if let Err(error) = self.consumer.store_offset_from_message(&message) {
                tracing::warn!(%error, "could not store an offset");
            }
        }
        commit(self.consumer);
    }

    /// Applies the message's event, retrying while the read store fails. Returns false when
    /// stopped before the event could be applied: its offset must not be stored.
    async fn handle(&self, message: &BorrowedMessage<'_>, stop: &CancellationToken) -> bool {
        match retry(stop, || self.hold_back(message)).await {
            Some(true) => return true,
            Some(false) => {}
            None => return false,
        }
        let event = match PublishedEvent::from_json(message.payload().unwrap_or_default()) {
            Ok(event) => event,
            Err(error) => return self.dead_letter(message, &error.to_string(), stop).await,
        };
        let applied = retry(stop, || async {
            match self.projections.apply(&event).await {
                Ok(outcome) => {
                    tracing::debug!(event_id = %event.event_id, ?outcome, "event handled");
                    Ok(None)
                }
                Err(ProjectionError::Unreadable(error)) => Ok(Some(error.to_string())),
                Err(error) => Err(error),
            }
        })
        .await;
        match applied {
            Some(None) => true,
            Some(Some(reason)) => self.dead_letter(message, &reason, stop).await,
            None => false,
        }
    }

    /// Dead-letters `message` if an earlier message of its aggregate is dead-lettered and not
    /// yet redriven. Returns whether it did.
    async fn hold_back(&self, message: &BorrowedMessage<'_>) -> Result<bool, String> {
        let client = self.dead_letters.get().await.map_err(|e| e.to_string())?;
        let held_back = client
            .execute(
                "INSERT INTO dead_letters (topic, partition, \"offset\", key, payload, error)
                 SELECT $1, $2, $3, $4, $5, 'an earlier event of its aggregate is dead-lettered'
                  WHERE EXISTS (SELECT FROM dead_letters
                                 WHERE topic = $1 AND key = $4 AND redriven_at IS NULL)",
                &[
                    &message.topic(),
                    &message.partition(),
                    &message.offset(),
                    &message.key(),
                    &message.payload(),
                ],
            )
            .await
            .map_err(|e| e.to_string())?;
        if held_back > 0 {
            tracing::warn!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "held back behind a dead-lettered event of its aggregate"
            );
        }
        Ok(held_back > 0)
    }

    /// Keeps a message no projection can read, whole, so that it can be redriven.
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
