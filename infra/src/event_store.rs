//! The event store: postgres-es's `events` table, plus what we keep beside it in the same
//! database (the outbox and the id sequences). Its schema is migrated at start-up.

use std::time::Duration;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, CqrsFramework, EventStore as _};
use domain::id::IdError;
use domain::{CommentId, MessageId, UserId, VideoId};
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tracing::Instrument;

use crate::outbox::Doorbell;
use crate::settings::{expose, EventStoreSettings};
use crate::upcast::Upcasters;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/event_store");

/// How long a command waits for a pooled connection (or a new one): a Postgres that is slow
/// or gone is met with a quick refusal, not a queue that grows for ever.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The relay's connections: one publishing, one listening for other command APIs' commits.
const RELAY_CONNECTIONS: u32 = 2;

/// A pooled connection idle this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// How long Postgres lets one statement of the pool run before it cancels it: the pool's
/// statements are short (an aggregate's events, an id, one outbox batch).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The migrations run over a connection of their own, without the pool's statement timeout: a
/// migration may take long, or wait for another command API's.
async fn migrate(options: &PgConnectOptions) -> anyhow::Result<()> {
    let mut connection = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect()).await??;
    MIGRATOR.run_direct(&mut connection).await?;
    connection.close().await?;
    Ok(())
}

/// Runs `command` on aggregate `id` and records the events it decides, each stored with the
/// trace context of the write (event metadata `traceparent`), in a span of its own: the
/// relay's and the projector's spans continue that trace.
pub async fn record<A: Aggregate>(
    cqrs: &PostgresCqrs<A>,
    id: &str,
    command: A::Command,
) -> Result<(), AggregateError<A::Error>> {
    let span = tracing::info_span!(
        "record events",
        otel.kind = "client",
        db.system = "postgresql",
        aggregate.type = A::TYPE,
        aggregate.id = id,
    );
    async {
        let metadata = crate::telemetry::current_trace_context();
        let noted = crate::written::count();
        cqrs.execute_with_metadata(id, command, metadata).await?;
        if noted.is_some() && crate::written::count() == noted {
            // It decided no event: what it found is its aggregate's last event.
            crate::written::note(crate::written::Written {
                aggregate_type: A::TYPE,
                aggregate_id: id.to_owned(),
                sequence: None,
            });
        }
        Ok(())
    }
    .instrument(span)
    .await
}

/// Whether the event store failed to answer (no connection in time, a statement cancelled by
/// its timeout, a server going away) rather than refused what was asked: "try again", not a
/// fault of ours.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| crate::sqlstate_is_unavailable(&code)),
        _ => false,
    }
}

/// Whether a command failed because the event store did not answer (see [`is_unavailable`]).
pub fn aggregate_unavailable<E: std::error::Error>(error: &AggregateError<E>) -> bool {
    match error {
        AggregateError::DatabaseConnectionError(_) => true,
        AggregateError::UnexpectedError(cause) => cause
            .downcast_ref::<sqlx::Error>()
            .is_some_and(is_unavailable),
        _ => false,
    }
}

#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    options: PgConnectOptions,
    doorbell: Doorbell,
}

impl EventStore {
    /// Connects and brings the schema up to date.
    pub async fn connect(settings: &EventStoreSettings) -> anyhow::Result<Self> {
        let options: PgConnectOptions = expose(&settings.database_url).parse()?;
        migrate(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.database_pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings every connection it hands out by default: a round trip more for each
            // of a command's three statements. Only a connection idle for a while is pinged
            // (one that Postgres may have closed meanwhile); under load none is.
            .test_before_acquire(false)
            .before_acquire(|connection, metadata| {
                Box::pin(async move {
                    if metadata.idle_for >= PING_WHEN_IDLE_FOR {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(
                options
                    .clone()
                    .options([("statement_timeout", STATEMENT_TIMEOUT.as_millis())]),
            )
            .await?;
        Ok(Self {
            pool,
            options,
            doorbell: Doorbell::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A pool of its own for the outbox relay, so that requests filling the command pool
    /// never keep the relay from publishing (nor the relay, holding a connection while the
    /// broker acknowledges a batch, take one from a request). Connects on first use.
    ///
    /// The relay publishes under a lock held for the length of a transaction: its sessions
    /// end, and the lock with them, once idle in a transaction for `lease` (a relay frozen
    /// while the broker acknowledges, a paused machine) or once the network to it is gone
    /// that long (TCP keepalives and user timeout, on the server's side), so that another
    /// relay takes over.
    pub fn relay_pool(&self, lease: Duration) -> PgPool {
        let lease_ms = lease.as_millis().max(1);
        let probe_secs = (lease.as_secs() / 3).max(1);
        PgPoolOptions::new()
            .max_connections(RELAY_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(self.options.clone().options([
                (
                    "statement_timeout",
                    STATEMENT_TIMEOUT.as_millis().to_string(),
                ),
                ("idle_in_transaction_session_timeout", lease_ms.to_string()),
                ("tcp_user_timeout", lease_ms.to_string()),
                ("tcp_keepalives_idle", probe_secs.to_string()),
                (
                    "tcp_keepalives_interval",
                    (probe_secs / 3).max(1).to_string(),
                ),
                ("tcp_keepalives_count", "3".to_owned()),
            ]))
    }

    /// One connection for the operators' questions (readiness, the outbox's backlog): a
    /// busy command pool must neither make the service look dead nor keep its metrics from
    /// answering. Connects on first use.
    pub fn operations_pool(&self) -> PgPool {
        self.pool_of_its_own(1)
    }

    fn pool_of_its_own(&self, connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(
                self.options
                    .clone()
                    .options([("statement_timeout", STATEMENT_TIMEOUT.as_millis())]),
            )
    }

    /// Rung by every command executor made here once its events are committed: see
    /// [`Doorbell::tell_other_relays`] for the relays of other processes.
    pub fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    /// How to open a connection of one's own to the event store (without the pool's
    /// statement timeout).
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// A command executor for aggregate `A`. Read models are not fed from here (a dispatch
    /// after commit is lost if the process dies), but from the outbox through Kafka; the only
    /// query rings the relays' doorbell.
    pub fn cqrs<A: Aggregate>(&self, services: A::Services) -> PostgresCqrs<A> {
        let store = PersistedEventStore::new_event_store(self.repository())
            .with_upcasters(Upcasters::CURRENT.for_event_store());
        CqrsFramework::new(store, self.on_commit(), services)
    }

    /// A command executor for aggregates whose histories grow long (a conversation): it
    /// loads the latest snapshot and only the events after it, and snapshots the state
    /// every `every` events.
    pub fn snapshotting_cqrs<A: Aggregate>(
        &self,
        every: usize,
        services: A::Services,
    ) -> PostgresCqrs<A> {
        let store = PersistedEventStore::new_snapshot_store(self.repository(), every)
            .with_upcasters(Upcasters::CURRENT.for_event_store());
        CqrsFramework::new(store, self.on_commit(), services)
    }

    /// What every command executor runs once its events are committed: the relays' doorbell,
    /// and the note of what the request wrote ([`crate::written`]).
    fn on_commit<A: Aggregate>(&self) -> Vec<Box<dyn cqrs_es::Query<A>>> {
        vec![
            self.doorbell.on_commit(),
            Box::new(crate::written::NoteCommitted),
        ]
    }

    /// Events read through it are upcast to their current versions ([`crate::upcast`]).
    fn repository(&self) -> PostgresEventRepository {
        PostgresEventRepository::new(self.pool.clone())
    }

    /// The sequence of the last event of aggregate `id` of type `aggregate_type` (0 if none).
    pub async fn last_sequence(&self, aggregate_type: &str, id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COALESCE(max(sequence), 0) FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(id)
        .fetch_one(&self.pool)
        .await
    }

    /// The current state of one aggregate, straight from its events.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        let store: PersistedEventStore<PostgresEventRepository, A> =
            PersistedEventStore::new_event_store(self.repository())
                .with_upcasters(Upcasters::CURRENT.for_event_store());
        let mut context = store.load_aggregate(id).await?;
        Ok(std::mem::take(context.aggregate()))
    }

    pub async fn next_user_id(&self) -> Result<UserId, sqlx::Error> {
        self.next_id("user_ids").await
    }

    pub async fn next_video_id(&self) -> Result<VideoId, sqlx::Error> {
        self.next_id("video_ids").await
    }

    pub async fn next_comment_id(&self) -> Result<CommentId, sqlx::Error> {
        self.next_id("comment_ids").await
    }

    pub async fn next_message_id(&self) -> Result<MessageId, sqlx::Error> {
        self.next_id("message_ids").await
    }

    async fn next_id<T>(&self, sequence: &str) -> Result<T, sqlx::Error>
    where
        T: TryFrom<i64, Error = IdError>,
    {
        let id: i64 = sqlx::query_scalar("SELECT nextval($1::regclass)")
            .bind(sequence)
            .fetch_one(&self.pool)
            .await?;
        T::try_from(id).map_err(|error| sqlx::Error::Decode(Box::new(error)))
    }

    /// A publish time (epoch ms) no other video has: `now`, or one past the last one given.
    pub async fn next_publish_time(&self, now: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "UPDATE publish_clock SET last_publish = GREATEST(last_publish + 1, $1)
             RETURNING last_publish",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
    }
}
