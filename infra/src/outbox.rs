//! The relay: publishes the events queued in the outbox to Kafka, in order per aggregate.
//!
//! The outbox is filled by a trigger in the transaction that inserts the events (see the
//! event-store migration), so nothing committed is missed, whatever happens to the process
//! that committed it. The relay deletes a queued event only once the broker has acknowledged
//! it: a relay that dies in between publishes it again when it restarts, and consumers drop
//! the repeat by its sequence.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, EventEnvelope, Query};
use futures::future::try_join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::envelope::{PublishedEvent, StoredEvent};
use crate::kafka::{ensure_topics, Topics};
use crate::metrics::{
    OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PARKED, RELAY_ERRORS, RELAY_PARKED, RELAY_PUBLISHED,
};
use crate::read_after_write::{payloads, Notice, Reached, PARKED_CHANNEL};
use crate::settings::KafkaSettings;

/// One relay at a time publishes, so that two relays cannot interleave an aggregate's events.
pub const RELAY_LOCK: i64 = 0x6f75_7462_6f78; // "outbox"
const BATCH_SIZE: i64 = 500;
/// The relay vacuums the outbox itself once it has deleted this many rows: autovacuum may be
/// off, or late, and every dead row slows the scan of the queue (see the migration
/// `outbox_vacuumed_often`).
const VACUUM_AFTER: usize = 20_000;
/// How long the broker may take to acknowledge a batch before the relay says it is waiting.
const SLOW_ACKNOWLEDGEMENT: Duration = Duration::from_secs(2);

/// How long telling other relays (connecting, then notifying) may take.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);
/// A wake-up can be missed (a command API that died between its commit and its doorbell, a
/// notification connection being re-made, another relay holding the lock): look at the queue
/// at least this often anyway.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Rung after every command that committed events. It wakes this process's relay at once, and
/// the relays of other command APIs through `NOTIFY outbox`, sent on a connection of its own
/// after the command's commit: a notification inside the write's transaction would make every
/// committing writer wait for the one before (see the migration that took it out of the
/// trigger). Rings that come while a notification is being sent fold into one more.
#[derive(Clone, Default)]
pub struct Doorbell(Arc<Bells>);

#[derive(Default)]
struct Bells {
    relay: Notify,
    other_relays: Notify,
}

impl Doorbell {
    pub fn ring(&self) {
        self.0.relay.notify_one();
        self.0.other_relays.notify_one();
    }

    async fn rung(&self) {
        self.0.relay.notified().await;
    }

    /// A cqrs-es query that rings the doorbell once a command's events are committed.
    pub fn on_commit<A: Aggregate>(&self) -> Box<dyn Query<A>> {
        Box::new(RingOnCommit(self.clone()))
    }

    /// Tells the relays of other processes about rings until `shutdown`, over a connection
    /// of its own. Its one-statement transactions commit without waiting for their WAL
    /// flush: a notification lost in a crash costs a relay at most one poll interval.
    pub async fn tell_other_relays(self, options: PgConnectOptions, shutdown: CancellationToken) {
        let options = options.options([("synchronous_commit", "off")]);
        let mut connection: Option<PgConnection> = None;
        let mut backoff = Backoff::default();
        loop {
            tokio::select! {
                _ = self.0.other_relays.notified() => {}
                _ = shutdown.cancelled() => break,
            }
            let told = async {
                if connection.is_none() {
                    connection = Some(options.connect().await?);
                }
                let connection = connection.as_mut().expect("connected above");
                sqlx::query("SELECT pg_notify('outbox', '')")
                    .execute(connection)
                    .await
                    .map(drop)
            };
            // A connection that went silent (half-open) is given up, not waited on for ever.
            let told = tokio::time::timeout(NOTIFY_TIMEOUT, told)
                .await
                .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
            match told {
                Ok(()) => backoff.reset(),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff.next(), "could not notify other relays");
                    connection = None;
                    // The ring is kept for the next attempt.
                    self.0.other_relays.notify_one();
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                }
            }
        }
        if let Some(connection) = connection {
            let _ = connection.close().await;
        }
    }
}

struct RingOnCommit(Doorbell);

#[async_trait::async_trait]
impl<A: Aggregate> Query<A> for RingOnCommit {
    async fn dispatch(&self, _aggregate_id: &str, _events: &[EventEnvelope<A>]) {
        self.0.ring();
    }
}

pub struct Relay {
    pool: PgPool,
    doorbell: Doorbell,
    poll_interval: Duration,
    deleted_since_vacuum: usize,
    delivery_timeout: Duration,
    producer: FutureProducer,
    kafka: KafkaSettings,
    topics: Topics,
}

impl Relay {
    /// A relay woken by `doorbell` (this process's commands) and by other processes'
    /// notifications.
    /// A relay publishing through connections of `pool`, whose sessions end when idle in a
    /// transaction for `lease` ([`crate::event_store::EventStore::relay_pool`]): its
    /// deliveries fail well within that, so a working relay never outlives its lease, and a
    /// frozen one (a paused machine, a network cut) holds the relay lock no longer.
    pub fn new(
        pool: PgPool,
        doorbell: Doorbell,
        kafka: &KafkaSettings,
        lease: Duration,
    ) -> Result<Self, RelayError> {
        let delivery_timeout = crate::kafka::DELIVERY_TIMEOUT.min(lease / 2);
        Ok(Self {
            pool,
            doorbell,
            poll_interval: POLL_INTERVAL,
            deleted_since_vacuum: 0,
            delivery_timeout,
            producer: crate::kafka::producer_within(kafka, delivery_timeout)?,
            kafka: kafka.clone(),
            topics: Topics::new(kafka),
        })
    }

    /// Looks at the queue this often when nothing wakes it (tests make it long, so that only
    /// a wake-up publishes).
    pub fn polling_every(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Publishes one batch of queued events and removes them from the queue. Returns how many
    /// events it took off the queue: 0 when the queue is empty or another relay is publishing.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(0);
        }
        let rows = sqlx::query(
            "SELECT o.id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                    e.event_version, e.payload, e.recorded_at, e.metadata
               FROM outbox o
               JOIN events e USING (aggregate_type, aggregate_id, sequence)
              WHERE o.parked_because IS NULL
                AND NOT EXISTS (
                    SELECT FROM outbox parked
                     WHERE parked.parked_because IS NOT NULL
                       AND parked.aggregate_type = o.aggregate_type
                       AND parked.aggregate_id = o.aggregate_id)
              ORDER BY o.id
              LIMIT $1",
        )
        .bind(BATCH_SIZE)
        .fetch_all(&mut *tx)
        .await?;

        let mut published = Vec::with_capacity(rows.len());
        let mut deliveries = Vec::with_capacity(rows.len());
        // One span per traced event, from its enqueuing to the broker's acknowledgement.
        let mut spans = Vec::new();
        // Aggregates with an event parked in this batch: their later events wait too.
        let mut held_back = HashSet::new();
        let mut parked = vec![];
        for row in &rows {
            let id: i64 = row.get("id");
            let aggregate: (String, String) = (row.get("aggregate_type"), row.get("aggregate_id"));
            if held_back.contains(&aggregate) {
                continue;
            }
            let stored = StoredEvent {
                aggregate_type: row.get("aggregate_type"),
                aggregate_id: row.get("aggregate_id"),
                sequence: row.get("sequence"),
                event_type: row.get("event_type"),
                event_version: row.get("event_version"),
                payload: row.get("payload"),
                recorded_at: row.get::<DateTime<Utc>, _>("recorded_at"),
            };
            let event = match PublishedEvent::from_stored(stored) {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(outbox_id = id, %error, "parking an event that cannot be published");
                    metrics::counter!(RELAY_PARKED).increment(1);
                    sqlx::query("UPDATE outbox SET parked_because = $2 WHERE id = $1")
                        .bind(id)
                        .bind(error.to_string())
                        .execute(&mut *tx)
                        .await?;
                    // Requests waiting for it to be readable stop waiting (told once committed).
                    parked.push(Notice {
                        reached: Reached::Parked,
                        sequence: row.get("sequence"),
                        aggregate_type: aggregate.0.clone(),
                        aggregate_id: aggregate.1.clone(),
                    });
                    held_back.insert(aggregate);
                    continue;
                }
            };
            let topic = self.topics.for_aggregate(&event.aggregate_type);
            let value = event.to_json();
            let mut headers = event.cloud_event_headers().into_iter().fold(
                OwnedHeaders::new_with_capacity(8),
                |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(&value),
                    })
                },
            );
            // The write's trace goes on: this span is a child of the span that recorded the
            // event, and the message carries its own context to the consumers.
            let write = if crate::telemetry::traces_on() {
                trace_context(row.get("metadata"))
            } else {
                HashMap::new()
            };
            if !write.is_empty() {
                let span = tracing::info_span!(
                    "publish event",
                    otel.kind = "producer",
                    messaging.system = "kafka",
                    messaging.destination.name = %topic,
                    event_id = %event.event_id,
                );
                crate::telemetry::continue_trace(&span, &write);
                for (key, value) in span.in_scope(crate::telemetry::current_trace_context) {
                    headers = headers.insert(Header {
                        key: &key,
                        value: Some(&value),
                    });
                }
                spans.push(span);
            }
            // Enqueue every message before awaiting any: the producer batches them, and keeps
            // their order within a partition.
            let delivery = self
                .producer
                .send_result(
                    FutureRecord::to(&topic)
                        .key(&event.aggregate_id)
                        .payload(&value)
                        .headers(headers),
                )
                .map_err(|(error, _)| error)?;
            deliveries.push(delivery);
            published.push(id);
        }
        // While the broker keeps the batch waiting (a broker down, fewer replicas in sync
        // than min.insync.replicas), the relay says why, every few seconds, until the delivery
        // timeout gives up on it and the batch is tried again.
        let acknowledged = try_join_all(deliveries);
        tokio::pin!(acknowledged);
        let waiting_since = std::time::Instant::now();
        let outcomes = loop {
            tokio::select! {
                outcomes = &mut acknowledged => break outcomes,
                _ = tokio::time::sleep(SLOW_ACKNOWLEDGEMENT) => tracing::warn!(
                    events = published.len(),
                    waited = ?waiting_since.elapsed(),
                    "the broker has not acknowledged the batch yet (a broker down, or fewer replicas in sync than min.insync.replicas): writes are still accepted and wait in the outbox"
                ),
            }
        };
        for outcome in outcomes.map_err(|_| rdkafka::error::KafkaError::Canceled)? {
            outcome.map_err(|(error, _)| error)?;
        }
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        drop(spans);
        if !parked.is_empty() {
            // Best effort: a request not told waits to its bound.
            let told = sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
                .bind(PARKED_CHANNEL)
                .bind(payloads(&parked))
                .execute(&self.pool)
                .await;
            if let Err(error) = told {
                tracing::warn!(%error, "could not tell the command APIs of parked events");
            }
        }
        metrics::counter!(RELAY_PUBLISHED).increment(published.len() as u64);
        Ok(rows.len())
    }

    /// Publishes until `shutdown`, woken by the doorbell and by other command APIs'
    /// notifications, and polling meanwhile. Commands are
    /// accepted while the broker is away: their events wait in the outbox.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let topics: Vec<String> = domain::published::AGGREGATE_TYPES
            .iter()
            .map(|aggregate_type| self.topics.for_aggregate(aggregate_type))
            .collect();
        let mut topics_exist = false;
        let mut listener = None;
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            let published = async {
                if !topics_exist {
                    ensure_topics(&self.kafka, &topics).await?;
                    topics_exist = true;
                }
                self.drain().await
            };
            if let Err(error) = published.await {
                tracing::error!(%error, retry_in = ?backoff.next(), "relay could not publish");
                metrics::counter!(RELAY_ERRORS).increment(1);
                // The broker may have lost its topics (restarted without its storage): look
                // again before the next attempt rather than fail on them for ever.
                topics_exist = false;
                self.recover_producer();
                backoff.wait(&shutdown).await;
                continue;
            }
            backoff.reset();
            if listener.is_none() {
                listener = self.listen().await;
            }
            tokio::select! {
                notified = async {
                    match listener.as_mut() {
                        Some(listener) => listener.recv().await.map(drop),
                        None => std::future::pending().await,
                    }
                } => {
                    if let Err(error) = notified {
                        tracing::warn!(%error, "relay lost its notification connection");
                        listener = None;
                    }
                }
                _ = self.doorbell.rung() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Makes a new producer if this one has met a fatal error (an idempotent producer does,
    /// when the broker loses the state of its sequence numbers, for one): it would refuse
    /// every message from then on. What it had not delivered is still in the outbox.
    fn recover_producer(&mut self) {
        let Some((code, reason)) = self.producer.client().fatal_error() else {
            return;
        };
        tracing::error!(
            ?code,
            reason,
            "the producer failed for good: making a new one"
        );
        match crate::kafka::producer_within(&self.kafka, self.delivery_timeout) {
            Ok(producer) => self.producer = producer,
            Err(error) => tracing::error!(%error, "could not make a new producer yet"),
        }
    }

    /// A connection that hears other command APIs' doorbells; without one the relay polls.
    async fn listen(&self) -> Option<PgListener> {
        let listener = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen("outbox").await?;
            Ok::<_, sqlx::Error>(listener)
        };
        listener
            .await
            .inspect_err(
                |error| tracing::warn!(%error, "relay cannot listen for notifications yet"),
            )
            .ok()
    }

    async fn drain(&mut self) -> Result<(), RelayError> {
        loop {
            let taken = self.publish_batch().await?;
            self.vacuum_when_due(taken).await;
            if (taken as i64) < BATCH_SIZE {
                return Ok(());
            }
        }
    }

    /// Vacuums the outbox once enough rows were deleted since the last time. It waits for no
    /// lock: it skips the table while another vacuum (autovacuum) holds it, and never tries
    /// to shorten it (the exclusive lock that takes would wait for committing writers). One
    /// that fails is tried again after as many deletions more, not at every batch.
    async fn vacuum_when_due(&mut self, deleted: usize) {
        self.deleted_since_vacuum += deleted;
        if self.deleted_since_vacuum < VACUUM_AFTER {
            return;
        }
        self.deleted_since_vacuum = 0;
        if let Err(error) = sqlx::query("VACUUM (TRUNCATE false, SKIP_LOCKED) outbox")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(%error, "could not vacuum the outbox");
        }
    }
}

/// What waits in the outbox: how many events, how long the oldest has waited, and how many
/// are parked (unpublishable, held for an operator: docs/architecture.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    pub events: i64,
    pub oldest_age: Duration,
    pub parked: i64,
}

impl Backlog {
    /// The statement that reads it: see the file for how it stays cheap.
    pub const STATEMENT: &'static str = include_str!("sql/outbox_backlog.sql");

    /// Reads the outbox's backlog, estimated from the ends of the queue. Parked events are
    /// counted apart: they stay until an operator acts, and would otherwise keep the age
    /// growing for ever.
    pub async fn read(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let (events, oldest_age, parked): (i64, f64, i64) =
            sqlx::query_as(Self::STATEMENT).fetch_one(pool).await?;
        Ok(Self {
            events: events.max(0),
            oldest_age: Duration::from_secs_f64(oldest_age.max(0.0)),
            parked,
        })
    }

    /// Sets the backlog's gauges.
    pub fn record(&self) {
        metrics::gauge!(OUTBOX_BACKLOG).set(self.events as f64);
        metrics::gauge!(OUTBOX_OLDEST_AGE).set(self.oldest_age.as_secs_f64());
        metrics::gauge!(OUTBOX_PARKED).set(self.parked as f64);
    }
}

/// The trace context an event was stored with (its metadata's `traceparent` and `tracestate`):
/// empty for events recorded untraced, or before metadata held one.
fn trace_context(metadata: Option<serde_json::Value>) -> HashMap<String, String> {
    let Some(serde_json::Value::Object(fields)) = metadata else {
        return HashMap::new();
    };
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| match fields.get(key) {
            Some(serde_json::Value::String(value)) => Some((key.to_owned(), value.clone())),
            _ => None,
        })
        .collect()
}
