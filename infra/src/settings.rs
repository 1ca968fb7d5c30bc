//! Typed settings, read from environment variables (`DATABASE_URL`, `KAFKA_BROKERS`, ...).
//!
//! Every service reads only the groups it needs; each group names its variables in the
//! README. Defaults suit the local stack started by `make run`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use chrono::FixedOffset;
use config::{Config, ConfigError, Environment};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::limits::{Limit, Rate};

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
/// query API. `LOCK_LEASE_MS` (30 s): how long a projector that stopped answering (frozen,
/// cut off) may hold the locks the others wait for (a Redis rebuild's).
#[derive(Clone, Debug, Deserialize)]
pub struct ReadStoreSettings {
    #[serde(default = "default_read_database_url")]
    pub read_database_url: SecretString,
    #[serde(default = "default_pool_size")]
    pub read_database_pool_size: u32,
    #[serde(default = "default_lock_lease_ms")]
    pub lock_lease_ms: u64,
}

impl ReadStoreSettings {
    pub fn lock_lease(&self) -> Duration {
        Duration::from_millis(self.lock_lease_ms.max(1))
    }
}

/// `READ_AFTER_WRITE` (on by default; `off` answers writes without waiting) and
/// `READ_AFTER_WRITE_WAIT_MS` (2,000): whether a write is answered once it is readable, and
/// how long it waits for that at most (docs/api.md, "Read after write"). The query API reads
/// the switch too: with it on, it keeps no replies in memory.
#[derive(Clone, Debug, Deserialize)]
pub struct ReadAfterWriteSettings {
    #[serde(default = "default_read_after_write")]
    pub read_after_write: bool,
    #[serde(default = "default_read_after_write_wait_ms")]
    pub read_after_write_wait_ms: u64,
}

impl ReadAfterWriteSettings {
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.read_after_write_wait_ms)
    }
}

impl Default for ReadAfterWriteSettings {
    fn default() -> Self {
        Self {
            read_after_write: default_read_after_write(),
            read_after_write_wait_ms: default_read_after_write_wait_ms(),
        }
    }
}

fn default_read_after_write() -> bool {
    true
}

/// Two seconds: far past a write's usual path to the read models (tens of milliseconds),
/// short enough that a client is not left hanging when the projectors are down.
fn default_read_after_write_wait_ms() -> u64 {
    2_000
}

/// 30 s: well past a batch's or a delivery's length, short enough that a holder that froze
/// holds nobody up for long.
pub fn default_lock_lease_ms() -> u64 {
    30_000
}

/// `REDIS_URL`, `REDIS_KEY_PREFIX`: counters and membership read models.
#[derive(Clone, Debug, Deserialize)]
pub struct RedisSettings {
    #[serde(default = "default_redis_url")]
    pub redis_url: SecretString,
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
}

/// `PROJECTOR_GROUP`: the projectors' Kafka consumer group (projectors in one group share the
/// partitions); `verify` reads its committed offsets to know how far the read models have got.
/// `PROJECTOR_INSTANCE_ID` (unset by default): a name of this projector's own, unique in the
/// group and kept across its restarts, makes it a static member: a projector restarted within
/// the session timeout takes its partitions back without a rebalance of the group (a dynamic
/// member's restart rebalances twice, as it leaves and as it joins).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GroupSettings {
    #[serde(default = "default_projector_group")]
    pub projector_group: String,
    #[serde(default)]
    pub projector_instance_id: Option<String>,
}

fn default_projector_group() -> String {
    "douyin-projector".to_owned()
}

/// `KAFKA_BROKERS`, `KAFKA_TOPIC_PREFIX`, `KAFKA_PARTITIONS`, `KAFKA_REPLICATION_FACTOR`,
/// `KAFKA_FETCH_WAIT_MS`, `KAFKA_LINGER_MS`: where events are published, and how.
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
    /// How long the broker may hold a consumer's fetch waiting for data (librdkafka's
    /// `fetch.wait.max.ms`), in milliseconds. See `infra::kafka::consumer_config`.
    #[serde(default = "default_fetch_wait_ms")]
    pub kafka_fetch_wait_ms: u32,
    /// How long the producer holds a message for others to join its request (librdkafka's
    /// `linger.ms`), in milliseconds. See `infra::kafka::producer_within`.
    #[serde(default = "default_linger_ms")]
    pub kafka_linger_ms: u32,
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

/// `RATE_LIMIT` (`on`, or `off` to turn every limit off, as benchmarks do),
/// `RATE_LIMIT_KEY_PREFIX`, and one rate per limit (`COUNT/PERIOD`, e.g. `20/10m`):
/// `RATE_LIMIT_REGISTER`, `RATE_LIMIT_LOGIN` (per client address), `RATE_LIMIT_FAILED_LOGIN`
/// (per name and address), `RATE_LIMIT_FAILED_LOGIN_ACCOUNT` (per name, from addresses that
/// never signed in to it), `RATE_LIMIT_WRITE`, `RATE_LIMIT_PUBLISH` (per user). The defaults
/// leave a person on a phone, or a few hundred behind one carrier's address, alone.
#[derive(Clone, Debug, Deserialize)]
pub struct RateLimitSettings {
    #[serde(default = "default_rate_limit")]
    pub rate_limit: String,
    #[serde(default = "default_rate_limit_key_prefix")]
    pub rate_limit_key_prefix: String,
    #[serde(default = "default_register_rate")]
    pub rate_limit_register: Rate,
    #[serde(default = "default_login_rate")]
    pub rate_limit_login: Rate,
    #[serde(default = "default_failed_login_rate")]
    pub rate_limit_failed_login: Rate,
    #[serde(default = "default_failed_login_account_rate")]
    pub rate_limit_failed_login_account: Rate,
    #[serde(default = "default_write_rate")]
    pub rate_limit_write: Rate,
    #[serde(default = "default_publish_rate")]
    pub rate_limit_publish: Rate,
}

impl RateLimitSettings {
    /// Every limit at its default, under keys starting with `key_prefix`.
    pub fn with_key_prefix(key_prefix: &str) -> Self {
        Self {
            rate_limit: default_rate_limit(),
            rate_limit_key_prefix: key_prefix.to_owned(),
            rate_limit_register: default_register_rate(),
            rate_limit_login: default_login_rate(),
            rate_limit_failed_login: default_failed_login_rate(),
            rate_limit_failed_login_account: default_failed_login_account_rate(),
            rate_limit_write: default_write_rate(),
            rate_limit_publish: default_publish_rate(),
        }
    }

    pub fn off(mut self) -> Self {
        self.rate_limit = "off".to_owned();
        self
    }

    pub fn enabled(&self) -> bool {
        !self.rate_limit.eq_ignore_ascii_case("off")
    }

    /// Refuses a key prefix under the read models' one: a Redis rebuild deletes every key
    /// matching `REDIS_KEY_PREFIX*`, and would lift every limit with them.
    pub fn apart_from(&self, read_models: &RedisSettings) -> Result<(), ConfigError> {
        if self
            .rate_limit_key_prefix
            .starts_with(&read_models.redis_key_prefix)
        {
            return Err(ConfigError::Message(format!(
                "RATE_LIMIT_KEY_PREFIX {:?} starts with REDIS_KEY_PREFIX {:?}: a rebuild of the \
                 read models would wipe the rate limits",
                self.rate_limit_key_prefix, read_models.redis_key_prefix
            )));
        }
        Ok(())
    }

    pub fn rate(&self, limit: Limit) -> Rate {
        match limit {
            Limit::Register => self.rate_limit_register,
            Limit::Login => self.rate_limit_login,
            Limit::FailedLogin => self.rate_limit_failed_login,
            Limit::FailedLoginAccount => self.rate_limit_failed_login_account,
            Limit::Write => self.rate_limit_write,
            Limit::Publish => self.rate_limit_publish,
        }
    }
}

fn default_rate_limit() -> String {
    "on".to_owned()
}

fn default_rate_limit_key_prefix() -> String {
    "douyin-limits:".to_owned()
}

fn default_register_rate() -> Rate {
    Rate::new(30, Duration::from_secs(600))
}

fn default_login_rate() -> Rate {
    Rate::new(60, Duration::from_secs(60))
}

fn default_failed_login_rate() -> Rate {
    Rate::new(10, Duration::from_secs(900))
}

/// Two addresses' worth of guesses: a guesser with many addresses gets no more than two.
fn default_failed_login_account_rate() -> Rate {
    Rate::new(20, Duration::from_secs(900))
}

fn default_write_rate() -> Rate {
    Rate::new(120, Duration::from_secs(60))
}

fn default_publish_rate() -> Rate {
    Rate::new(30, Duration::from_secs(3600))
}

/// `TRUSTED_PROXIES`: the addresses or networks (comma-separated, e.g.
/// `127.0.0.1,::1,172.28.0.0/16`) whose `X-Real-IP` header names the client; `127.0.0.1,::1`
/// by default, where nginx runs beside the services.
#[derive(Clone, Debug, Deserialize)]
pub struct ProxySettings {
    #[serde(
        default = "default_trusted_proxies",
        deserialize_with = "deserialize_networks"
    )]
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            trusted_proxies: default_trusted_proxies(),
        }
    }
}

impl ProxySettings {
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|network| network.contains(&peer))
    }
}

fn default_trusted_proxies() -> Vec<IpNet> {
    vec![
        IpAddr::from(Ipv4Addr::LOCALHOST).into(),
        IpAddr::from(Ipv6Addr::LOCALHOST).into(),
    ]
}

fn deserialize_networks<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "TRUSTED_PROXIES: {entry:?} is neither an address nor a network"
                    ))
                })
        })
        .collect()
}

/// `PASSWORD_HASHES_AT_ONCE` (one per core by default), `PASSWORD_HASH_WAIT_MS` (2000): how
/// many password hashes run at once, and how long a sign-up or login waits for a slot before
/// it is turned away as busy.
#[derive(Clone, Debug, Deserialize)]
pub struct PasswordSettings {
    #[serde(default)]
    pub password_hashes_at_once: Option<usize>,
    #[serde(default = "default_password_hash_wait_ms")]
    pub password_hash_wait_ms: u64,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            password_hashes_at_once: None,
            password_hash_wait_ms: default_password_hash_wait_ms(),
        }
    }
}

impl PasswordSettings {
    pub fn password_hashes_at_once(&self) -> usize {
        self.password_hashes_at_once
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1)
    }

    pub fn password_hash_wait(&self) -> Duration {
        Duration::from_millis(self.password_hash_wait_ms)
    }
}

fn default_signature() -> String {
    "This user has not written a signature yet.".to_owned()
}

fn default_password_hash_wait_ms() -> u64 {
    2000
}

/// `PUBLIC_BASE_URL`: the address clients reach the API on, the base of every URL we return.
/// `DATE_UTC_OFFSET`: the time zone of the dates people read (a comment's `create_date`),
/// `+08:00` by default, where the client's users are. `DEFAULT_SIGNATURE`: a user card's
/// `signature` until users can write one (clients and the public test suites of this API
/// take an empty one for a missing field).
#[derive(Clone, Debug, Deserialize)]
pub struct PublicSettings {
    #[serde(default = "default_public_base_url")]
    pub public_base_url: String,
    #[serde(
        default = "default_date_utc_offset",
        deserialize_with = "deserialize_utc_offset"
    )]
    pub date_utc_offset: FixedOffset,
    #[serde(default = "default_signature")]
    pub default_signature: String,
}

impl PublicSettings {
    pub fn new(public_base_url: &str) -> Self {
        Self {
            public_base_url: public_base_url.to_owned(),
            date_utc_offset: default_date_utc_offset(),
            default_signature: default_signature(),
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

/// `MEDIA_STORE` (`local` or `s3`), `MEDIA_DIR`, `MEDIA_BUCKET`, `MAX_UPLOAD_BYTES`, `FFMPEG`,
/// `FFMPEG_MAX_CONCURRENT`, `UPLOADS_AT_ONCE`: where uploaded videos and their covers are
/// kept, how covers are taken, and how many uploads are received at once. With `s3`, the
/// standard `AWS_*` variables (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`, `AWS_ALLOW_HTTP`) say how to reach the store.
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
    /// How many ffmpeg runs (covers) may go on at once; a publish waits for a turn.
    #[serde(default = "default_ffmpeg_max_concurrent")]
    pub ffmpeg_max_concurrent: usize,
    /// `UPLOADS_AT_ONCE`: uploads received at once by one command API, each a temporary file
    /// of up to `max_upload_bytes`; one more is answered "busy" before a byte of it is read.
    #[serde(default = "default_uploads_at_once")]
    pub uploads_at_once: usize,
    /// Where an `s3` store is, given in code rather than by the `AWS_*` variables (tests
    /// point at a server of their own); overrides them.
    #[serde(skip)]
    pub s3_connection: Option<S3Connection>,
}

/// An S3-compatible server and the credentials to use there.
#[derive(Clone, Debug)]
pub struct S3Connection {
    /// `http://host:port` (plain HTTP is allowed then) or `https://...`.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
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

// Loopback: TLS would protect nothing and cost a third of a command's CPU (flame graph of
// the like path, docs/performance.md).
fn default_database_url() -> SecretString {
    secret("postgres://postgres:postgres@127.0.0.1:5432/douyin?sslmode=disable")
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

/// `KAFKA_FETCH_WAIT_MS` when unset.
pub const DEFAULT_KAFKA_FETCH_WAIT_MS: u32 = 500;

fn default_fetch_wait_ms() -> u32 {
    DEFAULT_KAFKA_FETCH_WAIT_MS
}

/// `KAFKA_LINGER_MS` when unset.
pub const DEFAULT_KAFKA_LINGER_MS: u32 = 2;

fn default_linger_ms() -> u32 {
    DEFAULT_KAFKA_LINGER_MS
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

/// 32 uploads of 100 MiB: 3.2 GiB of temporary files at most.
fn default_uploads_at_once() -> usize {
    32
}

/// One per core (a cover is decoded on one thread), and no more than half the memory allows
/// at the 2 GiB each run may take (command-api's `prlimit`): on a small machine a few crafted
/// videos must not take all of it.
fn default_ffmpeg_max_concurrent() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let by_memory = total_memory_bytes().map_or(cores, |bytes| (bytes / (4 << 30)) as usize);
    cores.min(by_memory).max(1)
}

/// The machine's memory, from /proc/meminfo (Linux); None elsewhere.
fn total_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
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
    fn trusted_proxies_are_addresses_or_networks() {
        let proxies: ProxySettings = serde_json::from_value(
            serde_json::json!({"trusted_proxies": "127.0.0.1, 172.28.0.0/16"}),
        )
        .unwrap();
        assert!(proxies.is_trusted("172.28.5.9".parse().unwrap()));
        assert!(proxies.is_trusted("127.0.0.1".parse().unwrap()));
        assert!(!proxies.is_trusted("172.29.0.1".parse().unwrap()));
        assert!(!proxies.is_trusted("::1".parse().unwrap()));
        let bad = serde_json::from_value::<ProxySettings>(
            serde_json::json!({"trusted_proxies": "nginx"}),
        );
        assert!(bad.unwrap_err().to_string().contains("TRUSTED_PROXIES"));
    }

    #[test]
    fn an_offset_that_is_not_one_is_refused() {
        let error = public("Asia/Shanghai").unwrap_err().to_string();
        assert!(error.contains("DATE_UTC_OFFSET"), "{error}");
    }
}
