//! The Postgres read models: a deadpool of tokio-postgres connections, and the schema,
//! migrated at start-up by each service that uses it.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::settings::{expose, ReadStoreSettings};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/read_store");

pub async fn connect(settings: &ReadStoreSettings) -> anyhow::Result<Pool> {
    let url = expose(&settings.read_database_url);
    migrate(url).await?;
    let config: tokio_postgres::Config = url.parse()?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(settings.read_database_pool_size as usize)
        .build()?;
    // Fail at start-up, not at the first request, when the database is out of reach.
    drop(pool.get().await?);
    Ok(pool)
}

/// The migrations are run over one short sqlx connection: sqlx's migrator (checksums, a lock
/// against concurrent runs) serves both databases, while queries go through deadpool.
async fn migrate(url: &str) -> anyhow::Result<()> {
    let mut connection = url.parse::<PgConnectOptions>()?.connect().await?;
    MIGRATOR.run(&mut connection).await?;
    connection.close().await?;
    Ok(())
}
