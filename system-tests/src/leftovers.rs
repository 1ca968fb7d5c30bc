//! Removing what one test run made: its databases, Redis keys, topics, consumer groups and
//! media folders, each named under the run's prefix (`infra::testing::run_prefix`). `make test`
//! removes its own run's at the end, and those of earlier runs that were stopped before theirs.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use sqlx::{Connection, PgConnection};

/// What a removal found and removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub databases: usize,
    pub redis_keys: usize,
    pub topics: usize,
    pub groups: usize,
    pub media_folders: usize,
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} databases, {} Redis keys, {} topics, {} consumer groups, {} media folders",
            self.databases, self.redis_keys, self.topics, self.groups, self.media_folders
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeftoversError {
    /// A prefix that `make run`'s names, or every test run's, would also match.
    #[error("{0:?} is not one test run's prefix (test-<id>-)")]
    NotARunPrefix(String),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the broker: {0}")]
    Broker(#[from] rdkafka::error::KafkaError),
    #[error("the broker would not delete {name}: {code}")]
    BrokerRefused {
        name: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
    #[error("media folder {path}: {source}")]
    Media {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Where the services a test run used are.
pub struct Services {
    /// A Postgres server URL without a database (`TEST_POSTGRES_URL`).
    pub postgres: String,
    pub redis: String,
    pub kafka_brokers: String,
}

impl Services {
    /// The same services the tests use, from the same variables.
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        Self {
            postgres: var(
                "TEST_POSTGRES_URL",
                "postgres://postgres:postgres@127.0.0.1:5432",
            ),
            redis: var("REDIS_URL", "redis://127.0.0.1:6379"),
            kafka_brokers: var("KAFKA_BROKERS", "127.0.0.1:9092"),
        }
    }
}

/// Accepts only one run's prefix: `test-`, letters and digits of its own, and a dash. `test-`
/// alone would take every run's names, and anything else might be another deployment's.
fn check(prefix: &str) -> Result<(), LeftoversError> {
    let id = prefix
        .strip_prefix("test-")
        .and_then(|rest| rest.strip_suffix('-'))
        .unwrap_or_default();
    // No dash inside: `test-ci-` would take `test-ci-7-`'s names too.
    let harmless = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
    if harmless {
        Ok(())
    } else {
        Err(LeftoversError::NotARunPrefix(prefix.to_owned()))
    }
}

/// Removes everything under `prefix` from `services`, and the run's media folders.
pub async fn remove(services: &Services, prefix: &str) -> Result<Removed, LeftoversError> {
    check(prefix)?;
    let mut removed = Removed {
        databases: drop_databases(&services.postgres, prefix).await?,
        redis_keys: unlink_keys(&services.redis, prefix).await?,
        ..Removed::default()
    };
    (removed.topics, removed.groups) =
        delete_topics_and_groups(&services.kafka_brokers, prefix).await?;
    removed.media_folders = remove_media(prefix)?;
    Ok(removed)
}

async fn drop_databases(server: &str, prefix: &str) -> Result<usize, LeftoversError> {
    let mut connection = PgConnection::connect(&format!("{server}/postgres")).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut connection)
            .await?;
    for name in &names {
        // The name came from the catalogue and passed `check`'s prefix; quoted all the same.
        let quoted = name.replace('"', "\"\"");
        sqlx::raw_sql(&format!(
            r#"DROP DATABASE IF EXISTS "{quoted}" WITH (FORCE)"#
        ))
        .execute(&mut connection)
        .await?;
    }
    Ok(names.len())
}

async fn unlink_keys(url: &str, prefix: &str) -> Result<usize, LeftoversError> {
    let client = redis::Client::open(url)?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    // `check` allows no glob characters in a prefix.
    let pattern = format!("{prefix}*");
    let mut cursor = 0u64;
    let mut count = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            let () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut redis)
                .await?;
            count += keys.len();
        }
        if next == 0 {
            return Ok(count);
        }
        cursor = next;
    }
}

async fn delete_topics_and_groups(
    brokers: &str,
    prefix: &str,
) -> Result<(usize, usize), LeftoversError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    let timeout = Duration::from_secs(10);
    let (topics, groups) = {
        let consumer: BaseConsumer = config.create()?;
        let metadata = consumer.fetch_metadata(None, timeout)?;
        let topics: Vec<String> = metadata
            .topics()
            .iter()
            .map(|topic| topic.name().to_owned())
            .filter(|name| name.starts_with(prefix))
            .collect();
        let groups: Vec<String> = consumer
            .fetch_group_list(None, timeout)?
            .groups()
            .iter()
            .map(|group| group.name().to_owned())
            .filter(|name| name.starts_with(prefix))
            .collect();
        (topics, groups)
    };
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    if !groups.is_empty() {
        // A static member (a projector with PROJECTOR_INSTANCE_ID) does not leave its group
        // when it stops: the broker drops it at its session timeout (6 s), and refuses to
        // delete the group until then.
        let mut left: Vec<String> = groups.clone();
        let deadline = std::time::Instant::now() + STATIC_MEMBERS_DROPPED_WITHIN;
        while !left.is_empty() {
            let mut still = vec![];
            for result in admin.delete_groups(&names(&left), &options).await? {
                match result {
                    Err((name, rdkafka::types::RDKafkaErrorCode::NonEmptyGroup))
                        if std::time::Instant::now() < deadline =>
                    {
                        still.push(name)
                    }
                    other => refused_unless_gone(other)?,
                }
            }
            if !still.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            left = still;
        }
    }
    if !topics.is_empty() {
        for result in admin.delete_topics(&names(&topics), &options).await? {
            refused_unless_gone(result)?;
        }
    }
    Ok((topics.len(), groups.len()))
}

/// Longer than the projectors' session timeout (`infra::kafka::consumer_config`).
const STATIC_MEMBERS_DROPPED_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// A topic or group already gone is removed all the same.
fn refused_unless_gone(
    result: Result<String, (String, rdkafka::types::RDKafkaErrorCode)>,
) -> Result<(), LeftoversError> {
    use rdkafka::types::RDKafkaErrorCode::{GroupIdNotFound, UnknownTopicOrPartition};
    match result {
        Ok(_) | Err((_, UnknownTopicOrPartition | GroupIdNotFound)) => Ok(()),
        Err((name, code)) => Err(LeftoversError::BrokerRefused { name, code }),
    }
}

fn names(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

fn remove_media(prefix: &str) -> Result<usize, LeftoversError> {
    let root = infra::testing::media_root();
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(LeftoversError::Media { path: root, source }),
    };
    let mut count = 0;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let path = entry.path();
            std::fs::remove_dir_all(&path)
                .map_err(|source| LeftoversError::Media { path, source })?;
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_runs_prefix_is_accepted() {
        for prefix in ["test-1a2b3c4d-", "test-dev0001-"] {
            assert!(check(prefix).is_ok(), "{prefix}");
        }
        for prefix in [
            "", "test-", "test--", "douyin", "douyin.", "test-a*-", "test-a?", "t-1-",
        ] {
            assert!(check(prefix).is_err(), "{prefix}");
        }
    }
}
