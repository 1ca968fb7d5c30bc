//! The Postgres read models: a deadpool of tokio-postgres connections, and the schema,
//! migrated by the projector when it starts (the one service that writes them); readers only
//! wait for the schema they need, so that a query API can read from a replica.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::settings::{expose, ReadStoreSettings};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/read_store");

/// How long a read waits for a free pooled connection, for a new one, or for the check of an
/// idle one: a Postgres that is slow or gone is met with a quick refusal, not a queue that
/// grows for ever.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long Postgres lets a request's statement run (behind a lock, on a server that is
/// overloaded) before it cancels it.
const REQUEST_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a reader waits at start-up for the projector to migrate the read models.
const SCHEMA_WAIT: Duration = Duration::from_secs(60);

/// A pool for answering requests (the query API): a statement running longer than 2 s is
/// cancelled. It runs no migration (the database may be a read-only replica): it waits, up to
/// a minute, until the schema has every migration this build knows.
pub async fn connect(settings: &ReadStoreSettings) -> anyhow::Result<Pool> {
    let url = expose(&settings.read_database_url);
    until_migrated(url).await?;
    let mut config: tokio_postgres::Config = url.parse()?;
    cancel_statements_after(&mut config, REQUEST_STATEMENT_TIMEOUT);
    pool(config, settings.read_database_pool_size as usize).await
}

/// A pool whose statements may run as long as they need: the projector's Redis rebuild reads
/// whole tables in one snapshot, and waits for another projector's rebuild to end. The
/// projector's: it migrates the read models first.
///
/// Its sessions hold the locks other projectors wait for (a Redis rebuild's): one that has
/// stopped answering (a paused machine, a network cut) is ended by Postgres once idle in a
/// transaction, or unreachable, for the lease (`LOCK_LEASE_MS`), and its locks with it.
pub async fn connect_for_batches(settings: &ReadStoreSettings) -> anyhow::Result<Pool> {
    let url = expose(&settings.read_database_url);
    migrate(url).await?;
    let mut config: tokio_postgres::Config = url.parse()?;
    add_options(&mut config, &lease_options(settings.lock_lease()));
    pool(config, settings.read_database_pool_size as usize).await
}

/// Session settings that end a session which stopped answering for `lease`: idle in its
/// transaction that long, or its network gone that long (the server's TCP keepalives and
/// user timeout).
fn lease_options(lease: Duration) -> String {
    let lease_ms = lease.as_millis().max(1);
    let probe_secs = (lease.as_secs() / 3).max(1);
    format!(
        "-c idle_in_transaction_session_timeout={lease_ms} -c tcp_user_timeout={lease_ms} \
         -c tcp_keepalives_idle={probe_secs} -c tcp_keepalives_interval={} \
         -c tcp_keepalives_count=3",
        (probe_secs / 3).max(1)
    )
}

/// Adds start-up options (`-c name=value ...`) to any the URL has: they cost no round trip.
fn add_options(config: &mut tokio_postgres::Config, own: &str) {
    let options = match config.get_options() {
        Some(options) => format!("{options} {own}"),
        None => own.to_owned(),
    };
    config.options(options);
}

/// One connection for the operators' questions (readiness, the gauges read at each scrape):
/// a request pool that is busy must neither make the service look dead nor keep its metrics
/// from answering. Its statements are cancelled after 2 s, as requests' are.
pub async fn connect_for_operations(settings: &ReadStoreSettings) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = expose(&settings.read_database_url).parse()?;
    cancel_statements_after(&mut config, REQUEST_STATEMENT_TIMEOUT);
    pool(config, 1).await
}

fn cancel_statements_after(config: &mut tokio_postgres::Config, timeout: Duration) {
    add_options(
        config,
        &format!("-c statement_timeout={}", timeout.as_millis()),
    );
}

/// A pool whose connections read and write the read models in `schema` (a generation being
/// rebuilt beside the live one; see [`migrate_schema`]), committing without waiting for the
/// disk (what such a pool writes is made again from the events if Postgres loses it), and
/// with no statement timeout whatever the server's default (folding a page log is long).
pub async fn connect_to_schema(
    settings: &ReadStoreSettings,
    schema: &str,
    size: usize,
) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = expose(&settings.read_database_url).parse()?;
    let own = format!(
        "-c search_path={} -c synchronous_commit=off -c statement_timeout=0",
        quote_identifier(schema).replace(' ', "\\ ")
    );
    add_options(&mut config, &own);
    pool(config, size).await
}

async fn pool(config: tokio_postgres::Config, size: usize) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            // An idle connection is checked with an empty query (one round trip) before it
            // is handed out: one that is dead though the client has not seen it closed yet
            // (just after a Postgres restart) or will never see it (a network path gone) is
            // replaced instead of failing the request it was given to.
            recycling_method: RecyclingMethod::Verified,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size)
        .timeouts(Timeouts {
            wait: Some(POOL_TIMEOUT),
            create: Some(POOL_TIMEOUT),
            recycle: Some(POOL_TIMEOUT),
        })
        // Without a runtime deadpool cannot time anything, and refuses every `get`.
        .runtime(Runtime::Tokio1)
        .build()?;
    // Fail at start-up, not at the first request, when the database is out of reach.
    drop(pool.get().await?);
    Ok(pool)
}

/// Taken shared by each projector batch's transaction as its first statement, and exclusively
/// by `projector rebuild` while it switches the read models to the generation it rebuilt:
/// no batch is applied to the old generation once the switch has read where they stand.
pub const GENERATION_SWITCH_LOCK: i64 = 0x0000_7377_6974_6368;

/// One connection outside any pool, for a long task of its own (a replay), with `options`
/// (`-c name=value ...`) set for its whole session.
pub async fn connect_one(url: &str, options: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if !options.is_empty() {
        let options = match config.get_options() {
            Some(own) => format!("{own} {options}"),
            None => options.to_owned(),
        };
        config.options(options);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "a read-store connection closed");
        }
    });
    Ok(client)
}

/// Makes schema `schema` (if it is not there) and the read models in it, by the same
/// migrations as the live ones: a generation being rebuilt beside them.
pub async fn migrate_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let options = url.parse::<PgConnectOptions>()?;
    let mut connection = tokio::time::timeout(POOL_TIMEOUT, options.connect()).await??;
    sqlx::query(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_identifier(schema)
    ))
    .execute(&mut connection)
    .await?;
    connection.close().await?;
    let options = options.options([("search_path", quote_identifier(schema))]);
    let mut connection = tokio::time::timeout(POOL_TIMEOUT, options.connect()).await??;
    MIGRATOR.run_direct(&mut connection).await?;
    connection.close().await?;
    Ok(())
}

/// `name` as a quoted SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The migrations are run over one short sqlx connection: sqlx's migrator (checksums, a lock
/// against concurrent runs) serves both databases, while queries go through deadpool. It has
/// no statement timeout: a migration may take long, or wait for another service's.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let options = url.parse::<PgConnectOptions>()?;
    let mut connection = tokio::time::timeout(POOL_TIMEOUT, options.connect()).await??;
    MIGRATOR.run_direct(&mut connection).await?;
    connection.close().await?;
    Ok(())
}

/// Waits until the read models at `url` have every migration this build knows, reading only
/// (sqlx's record of applied migrations), for [`SCHEMA_WAIT`] at most.
async fn until_migrated(url: &str) -> anyhow::Result<()> {
    let options = url.parse::<PgConnectOptions>()?;
    let started = tokio::time::Instant::now();
    let mut told = false;
    loop {
        let missing = missing_migrations(&options).await?;
        let Some(first) = missing.first() else {
            return Ok(());
        };
        if started.elapsed() >= SCHEMA_WAIT {
            anyhow::bail!(
                "the read store lacks {} migration(s) of this build (the first: {first}) after \
                 {SCHEMA_WAIT:?}: the projector migrates it when it starts; start it (of this \
                 build or a newer one) first",
                missing.len()
            );
        }
        if !told {
            tracing::info!(first = %first, "waiting for the projector to migrate the read store");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The migrations of this build not (successfully) applied to the read models, described.
async fn missing_migrations(options: &PgConnectOptions) -> anyhow::Result<Vec<String>> {
    let mut connection = tokio::time::timeout(POOL_TIMEOUT, options.connect()).await??;
    let applied: Result<Vec<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut connection)
            .await;
    connection.close().await?;
    let applied = match applied {
        Ok(applied) => applied,
        // Nothing migrated yet: no record at all.
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P01") => vec![],
        Err(error) => return Err(error.into()),
    };
    Ok(MIGRATOR
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .filter(|migration| !applied.contains(&migration.version))
        .map(|migration| format!("{} {}", migration.version, migration.description))
        .collect())
}
