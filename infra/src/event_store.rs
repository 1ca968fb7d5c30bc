//! The event store: postgres-es's `events` table, plus what we keep beside it in the same
//! database (the outbox and the id sequences). Its schema is migrated at start-up.

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore as _};
use domain::UserId;
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::settings::{expose, EventStoreSettings};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/event_store");

#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
}

impl EventStore {
    /// Connects and brings the schema up to date.
    pub async fn connect(settings: &EventStoreSettings) -> anyhow::Result<Self> {
        let options: PgConnectOptions = expose(&settings.database_url).parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.database_pool_size)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A command executor for aggregate `A`. Read models are not fed from here (a dispatch
    /// after commit is lost if the process dies), but from the outbox through Kafka.
    pub fn cqrs<A: Aggregate>(&self, services: A::Services) -> PostgresCqrs<A> {
        postgres_es::postgres_cqrs(self.pool.clone(), vec![], services)
    }

    /// The current state of one aggregate, straight from its events.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        let store: PersistedEventStore<PostgresEventRepository, A> =
            PersistedEventStore::new_event_store(PostgresEventRepository::new(self.pool.clone()));
        let mut context = store.load_aggregate(id).await?;
        Ok(std::mem::take(context.aggregate()))
    }

    pub async fn next_user_id(&self) -> Result<UserId, sqlx::Error> {
        let id: i64 = sqlx::query_scalar("SELECT nextval('user_ids')")
            .fetch_one(&self.pool)
            .await?;
        UserId::try_from(id).map_err(|error| sqlx::Error::Decode(Box::new(error)))
    }
}
