//! The Postgres side of a generation: the live read models are the tables of the read
//! database's schema (`public`, unless the URL says otherwise); a replay builds the next
//! generation in a schema of its own beside them, `<live>_replay`, migrated from scratch, and
//! the switch moves the live tables out to `<live>_replaced` and the rebuilt ones in, in one
//! transaction. Readers name tables without a schema, so their next statement reads the
//! tables now there (Postgres plans statements again once a table they used has moved).

use infra::read_store::quote_identifier;
use tokio_postgres::Client;

/// The schemas of the live read models, the one being rebuilt and the one replaced.
#[derive(Debug, Clone)]
pub struct Schemas {
    pub live: String,
    pub replay: String,
    pub replaced: String,
}

/// What a replay records of itself in its schema, with each page it applies: where to resume.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The replay's token, also in its Redis generation ([`infra::redis_store::Keys::building`]).
    pub token: String,
    pub redis_generation: u64,
    /// Whether the whole history has been read once; after that the replay only catches up.
    pub read_through: bool,
    /// The first block of the event store's table not read yet.
    pub next_block: i64,
    /// Events applied so far.
    pub events: i64,
    /// Of those, the ones that changed Redis: its generation's count of events applied
    /// ([`infra::redis_store::Keys::replayed`]) is never below it, unless Redis lost data.
    pub in_redis: i64,
}

/// Tables of a replay's schema that are no read model.
const OWN_TABLES: [&str; 3] = ["_sqlx_migrations", "replay_progress", "replay_applied"];

impl Schemas {
    /// The schemas beside the connection's current schema; None if it has none.
    pub async fn of(control: &Client) -> Result<Option<Self>, tokio_postgres::Error> {
        let live: Option<String> = control
            .query_one("SELECT current_schema()", &[])
            .await?
            .get(0);
        Ok(live.map(|live| Self {
            replay: format!("{live}_replay"),
            replaced: format!("{live}_replaced"),
            live,
        }))
    }

    /// What the replay building [`Schemas::replay`] recorded, if one began.
    pub async fn recorded(
        &self,
        control: &Client,
    ) -> Result<Option<Recorded>, tokio_postgres::Error> {
        let table = format!("{}.replay_progress", quote_identifier(&self.replay));
        let exists: bool = control
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = control
            .query_opt(
                &format!(
                    "SELECT token, redis_generation, read_through, next_block, events, in_redis
                       FROM {table}"
                ),
                &[],
            )
            .await?;
        Ok(row.map(|row| Recorded {
            token: row.get(0),
            redis_generation: row.get::<_, i64>(1) as u64,
            read_through: row.get(2),
            next_block: row.get(3),
            events: row.get(4),
            in_redis: row.get(5),
        }))
    }

    /// Makes the replay's schema anew: the read models' tables, empty, and its record.
    pub async fn begin(
        &self,
        control: &Client,
        url: &str,
        token: &str,
        redis_generation: u64,
    ) -> anyhow::Result<()> {
        drop_schema(control, &self.replay).await?;
        infra::read_store::migrate_schema(url, &self.replay).await?;
        control
            .batch_execute(&format!(
                "CREATE TABLE {0}.replay_progress
                 (
                     only_row         boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                     token            text    NOT NULL,
                     redis_generation bigint  NOT NULL,
                     read_through     boolean NOT NULL DEFAULT false,
                     next_block       bigint  NOT NULL DEFAULT 0,
                     events           bigint  NOT NULL DEFAULT 0,
                     in_redis         bigint  NOT NULL DEFAULT 0,
                     started_at       timestamptz NOT NULL DEFAULT now()
                 );
                 CREATE TABLE {0}.replay_applied
                 (
                     aggregate_type text   NOT NULL,
                     aggregate_id   text   NOT NULL,
                     sequence       bigint NOT NULL
                 )",
                quote_identifier(&self.replay)
            ))
            .await?;
        control
            .execute(
                &format!(
                    "INSERT INTO {}.replay_progress (token, redis_generation) VALUES ($1, $2)",
                    quote_identifier(&self.replay)
                ),
                &[&token, &(redis_generation as i64)],
            )
            .await?;
        Ok(())
    }

    /// The read-model tables the replay built (every table of its schema but its own).
    pub async fn tables(&self, control: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
        let rows = control
            .query(
                "SELECT tablename FROM pg_tables
                  WHERE schemaname = $1 AND tablename <> ALL($2)
                  ORDER BY tablename",
                &[&self.replay, &OWN_TABLES.as_slice()],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// `schema.table`, quoted.
    pub fn qualified(schema: &str, table: &str) -> String {
        format!("{}.{}", quote_identifier(schema), quote_identifier(table))
    }
}

pub async fn drop_schema(control: &Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    control
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_identifier(schema)
        ))
        .await
}
