//! Typed settings, read from environment variables (`DATABASE_URL`, `KAFKA_BROKERS`, ...).
//!
//! Every service reads only the groups it needs; each group names its variables in the
//! README. Defaults suit the local stack started by `make run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::FixedOffset;
use config::{Config, ConfigError, Environment};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Reads one group of settings from the process environment.
pub fn from_env<T: DeserializeOwned>() -> Result<T, ConfigError> {
    Config::builder()
        .add_source(Environment::default())
        .build()?
        .try_deserialize()
}

/// `DATABASE_URL`: the event store (and its outbox), written by the command API.
#[derive(Clone, Debug, Deserialize)]
pub struct EventStoreSettings {
    #[serde(default = "default_database_url")]
    pub database_url: SecretString,
    #[serde(default = "default_pool_size")]
    pub database_pool_size: u32,
}

/// `READ_DATABASE_URL`: the Postgres read models, written by the projector and read by the
/// query API.
#[derive(Clone, Debug, Deserialize)]
pub struct ReadStoreSettings {
    #[serde(default = "default_read_database_url")]
    pub read_database_url: SecretString,
    #[serde(default = "default_pool_size")]
    pub read_database_pool_size: u32,
}

/// `REDIS_URL`, `REDIS_KEY_PREFIX`: counters and membership read models.
#[derive(Clone, Debug, Deserialize)]
pub struct RedisSettings {
    #[serde(default = "default_redis_url")]
    pub redis_url: SecretString,
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
}

/// `KAFKA_BROKERS`, `KAFKA_TOPIC_PREFIX`, `KAFKA_PARTITIONS`, `KAFKA_REPLICATION_FACTOR`:
/// where events are published.
#[derive(Clone, Debug, Deserialize)]
pub struct KafkaSettings {
    #[serde(default = "default_kafka_brokers")]
    pub kafka_brokers: String,
    #[serde(default = "default_topic_prefix")]
    pub kafka_topic_prefix: String,
    /// Partitions of the topics this service creates when they are missing.
    #[serde(default = "default_partitions")]
    pub kafka_partitions: i32,
    #[serde(default = "default_replication_factor")]
    pub kafka_replication_factor: i32,
}

/// `JWT_SECRET` (required, at least 32 bytes), `TOKEN_TTL_SECS`.
#[derive(Clone, Debug, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: SecretString,
    #[serde(default = "default_token_ttl_secs")]
    pub token_ttl_secs: u64,
}

impl AuthSettings {
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }
}

/// `PUBLIC_BASE_URL`: the address clients reach the API on, the base of every URL we return.
/// `DATE_UTC_OFFSET`: the time zone of the dates people read (a comment's `create_date`),
/// `+08:00` by default, where the client's users are.
#[derive(Clone, Debug, Deserialize)]
pub struct PublicSettings {
    #[serde(default = "default_public_base_url")]
    pub public_base_url: String,
    #[serde(
        default = "default_date_utc_offset",
        deserialize_with = "deserialize_utc_offset"
    )]
    pub date_utc_offset: FixedOffset,
}

impl PublicSettings {
    pub fn new(public_base_url: &str) -> Self {
        Self {
            public_base_url: public_base_url.to_owned(),
            date_utc_offset: default_date_utc_offset(),
        }
    }

    /// A comment's `create_date`, `mm-dd`, of a time `at` (epoch ms).
    pub fn date(&self, at: i64) -> String {
        chrono::DateTime::from_timestamp_millis(at)
            .unwrap_or_default()
            .with_timezone(&self.date_utc_offset)
            .format("%m-%d")
            .to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.public_base_url.trim_end_matches('/'), path)
    }
}

/// `MEDIA_STORE` (`local` or `s3`), `MEDIA_DIR`, `MEDIA_BUCKET`, `MAX_UPLOAD_BYTES`, `FFMPEG`:
/// where uploaded videos and their covers are kept. With `s3`, the standard `AWS_*` variables
/// (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_ALLOW_HTTP`) say how to reach the store.
#[derive(Clone, Debug, Deserialize)]
pub struct MediaSettings {
    #[serde(default)]
    pub media_store: MediaBackend,
    #[serde(default = "default_media_dir")]
    pub media_dir: PathBuf,
    #[serde(default)]
    pub media_bucket: Option<String>,
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    #[default]
    Local,
    S3,
}

/// Where an HTTP service listens; `name` is the variable, e.g. `COMMAND_API_ADDR`.
pub fn listen_addr(name: &str, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|error| ConfigError::Message(format!("{name}={value:?}: {error}"))),
        Err(_) => Ok(default),
    }
}

pub fn secret(value: &str) -> SecretString {
    SecretString::from(value.to_owned())
}

pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

fn default_database_url() -> SecretString {
    secret("postgres://postgres:postgres@127.0.0.1:5432/douyin")
}

fn default_read_database_url() -> SecretString {
    secret("postgres://postgres:postgres@127.0.0.1:5432/douyin_read")
}

fn default_pool_size() -> u32 {
    16
}

fn default_redis_url() -> SecretString {
    secret("redis://127.0.0.1:6379")
}

fn default_redis_key_prefix() -> String {
    "douyin:".to_owned()
}

fn default_kafka_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}

fn default_topic_prefix() -> String {
    "douyin.".to_owned()
}

fn default_partitions() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    1
}

fn default_token_ttl_secs() -> u64 {
    7 * 24 * 3600
}

fn default_date_utc_offset() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

fn deserialize_utc_offset<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<FixedOffset, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "DATE_UTC_OFFSET must look like +08:00 or -05:30, not {text:?}"
        ))
    })
}

fn default_public_base_url() -> String {
    "http://127.0.0.1:8080".to_owned()
}

fn default_media_dir() -> PathBuf {
    PathBuf::from("media")
}

fn default_max_upload_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_ffmpeg() -> PathBuf {
    PathBuf::from("ffmpeg")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(offset: &str) -> Result<PublicSettings, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "date_utc_offset": offset }))
    }

    #[test]
    fn dates_are_shown_at_the_configured_offset() {
        // 2026-03-01 16:30 UTC is already 03-02 in China, still 03-01 in New York.
        let at = 1_772_382_600_000;
        assert_eq!(PublicSettings::new("http://x").date(at), "03-02");
        assert_eq!(public("-05:00").unwrap().date(at), "03-01");
        assert_eq!(public("+00:00").unwrap().date(at), "03-01");
    }

    #[test]
    fn an_offset_that_is_not_one_is_refused() {
        let error = public("Asia/Shanghai").unwrap_err().to_string();
        assert!(error.contains("DATE_UTC_OFFSET"), "{error}");
    }
}
