//! For tests that run against the real Postgres, Redis and broker: each test gets databases,
//! a Redis key prefix and Kafka topics of its own, so tests run side by side.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::{Connection, Executor, PgConnection};

use crate::envelope::PublishedEvent;
use crate::settings::{
    secret, AuthSettings, EventStoreSettings, KafkaSettings, MediaBackend, MediaSettings,
    PasswordSettings, RateLimitSettings, ReadAfterWriteSettings, ReadStoreSettings, RedisSettings,
};

/// `TEST_POSTGRES_URL`: a server the tests may create databases on (trust auth locally).
fn server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".into())
}

/// What every name a test makes begins with: its databases, Redis keys, topics, consumer
/// groups and media folders. `make test` gives each run one of its own (`TEST_RUN_PREFIX`,
/// `test-<time>-<n>-`), so that it can remove exactly what its tests made and nothing of
/// `make run`'s, nor of another run's (`remove-test-run`, in system-tests).
pub fn run_prefix() -> String {
    std::env::var("TEST_RUN_PREFIX").unwrap_or_else(|_| "test-".into())
}

/// A name nobody else uses, under the run's prefix.
pub fn unique(label: &str) -> String {
    format!("{}{label}{}", run_prefix(), uuid::Uuid::new_v4().simple())
}

/// Where tests keep uploaded media: one folder per run under the system's temporary folder.
pub fn media_root() -> std::path::PathBuf {
    std::env::temp_dir().join("douyin-test-media")
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database(label: &str) -> String {
    let name = unique(&format!("{label}-"));
    let server = server_url();
    let mut connection = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("the test Postgres server answers");
    connection
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("a test database can be created");
    format!("{server}/{name}")
}

/// An event as the relay would publish it, at its type's first version, for tests that feed
/// consumers by hand.
pub fn published_event(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_type: &str,
    occurred_at: chrono::DateTime<chrono::Utc>,
    payload: serde_json::Value,
) -> PublishedEvent {
    PublishedEvent {
        event_id: format!("{aggregate_type}/{aggregate_id}/{sequence}"),
        event_type: event_type.to_owned(),
        event_version: 1,
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        sequence,
        occurred_at,
        payload: match payload {
            serde_json::Value::Object(fields) => fields,
            other => panic!("a payload is an object, not {other}"),
        },
    }
}

/// Settings for one test: fresh databases, and prefixes nobody else uses.
#[derive(Clone, Debug)]
pub struct TestSettings {
    pub event_store: EventStoreSettings,
    pub read_store: ReadStoreSettings,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    pub auth: AuthSettings,
    pub media: MediaSettings,
    /// Off unless a test turns them on: tests sign up many users from one address.
    pub rate_limits: RateLimitSettings,
    pub passwords: PasswordSettings,
    pub read_after_write: ReadAfterWriteSettings,
}

impl TestSettings {
    pub async fn new() -> Self {
        let (event_store, read_store) =
            tokio::join!(fresh_database("events"), fresh_database("read"));
        let run = unique("");
        Self {
            event_store: EventStoreSettings {
                database_url: secret(&event_store),
                database_pool_size: 8,
            },
            read_store: ReadStoreSettings {
                read_database_url: secret(&read_store),
                read_database_pool_size: 8,
                lock_lease_ms: crate::settings::default_lock_lease_ms(),
            },
            redis: RedisSettings {
                redis_url: secret(
                    &std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
                ),
                redis_key_prefix: format!("{run}:"),
            },
            kafka: KafkaSettings {
                kafka_brokers: std::env::var("KAFKA_BROKERS")
                    .unwrap_or_else(|_| "127.0.0.1:9092".into()),
                kafka_topic_prefix: format!("{run}."),
                kafka_partitions: 2,
                kafka_replication_factor: 1,
                kafka_fetch_wait_ms: crate::settings::DEFAULT_KAFKA_FETCH_WAIT_MS,
                kafka_linger_ms: crate::settings::DEFAULT_KAFKA_LINGER_MS,
            },
            auth: AuthSettings {
                jwt_secret: secret(&unique("test-secret-of-enough-length-")),
                token_ttl_secs: 3600,
            },
            rate_limits: RateLimitSettings::with_key_prefix(&format!("{run}-limits:")).off(),
            // Tests run side by side on a few cores: a sign-up may wait long for a hashing
            // slot, and only a test of "busy" wants one turned away.
            passwords: PasswordSettings {
                password_hash_wait_ms: 60_000,
                ..PasswordSettings::default()
            },
            read_after_write: ReadAfterWriteSettings::default(),
            media: MediaSettings {
                media_store: MediaBackend::Local,
                media_dir: media_root().join(&run),
                media_bucket: None,
                max_upload_bytes: 100 * 1024 * 1024,
                ffmpeg: "ffmpeg".into(),
                ffmpeg_max_concurrent: 2,
                uploads_at_once: 32,
                s3_connection: None,
            },
        }
    }
}

/// Every event on `topic`, read from the beginning: waits until `done` holds for what was
/// read (or `deadline` passes), then keeps reading for `settle` to catch late duplicates.
pub fn read_topic(
    kafka: &KafkaSettings,
    topic: &str,
    done: impl Fn(&[PublishedEvent]) -> bool,
    deadline: Duration,
    settle: Duration,
) -> Vec<PublishedEvent> {
    read_messages(kafka, topic, done, deadline, settle)
        .into_iter()
        .map(|message| message.event)
        .collect()
}

/// A message as consumers get it: the event, and the message's headers.
#[derive(Debug, Clone)]
pub struct ReadMessage {
    pub event: PublishedEvent,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// As [`read_topic`], with each message's headers.
pub fn read_messages(
    kafka: &KafkaSettings,
    topic: &str,
    done: impl Fn(&[PublishedEvent]) -> bool,
    deadline: Duration,
    settle: Duration,
) -> Vec<ReadMessage> {
    let consumer: BaseConsumer = crate::kafka::consumer_config(kafka, &unique("reader-"))
        .create()
        .expect("a consumer can be created");
    let start = Instant::now();
    // The topic may not exist yet: its publisher creates it when it starts.
    let partitions = loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("the broker answers metadata requests");
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if !partitions.is_empty() || start.elapsed() > deadline {
            break partitions;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a valid partition");
    }
    consumer
        .assign(&assignment)
        .expect("partitions can be assigned");

    let mut events = Vec::new();
    let mut messages = Vec::new();
    let mut settled_at = None;
    loop {
        let now = Instant::now();
        if settled_at.is_none() && (done(&events) || now - start > deadline) {
            settled_at = Some(now + settle);
        }
        if settled_at.is_some_and(|until| now >= until) {
            return messages;
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("the broker delivers messages");
            let event = PublishedEvent::from_json(message.payload().unwrap_or_default())
                .expect("every message is an event envelope");
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|header| {
                            let value = header.value.unwrap_or_default();
                            (
                                header.key.to_owned(),
                                String::from_utf8_lossy(value).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            events.push(event.clone());
            messages.push(ReadMessage { event, headers });
        }
    }
}

/// The keys of the generation of the Redis read models readers read now.
pub async fn current_keys(settings: &RedisSettings) -> crate::redis_store::Keys {
    let mut redis = crate::redis_store::connect(settings)
        .await
        .expect("Redis answers");
    crate::redis_store::current(&mut redis, &crate::redis_store::Keys::new(settings))
        .await
        .expect("Redis answers")
}

/// Removes every key under `settings`' prefix at once, as a Redis restarting without its data
/// would.
pub async fn wipe_redis(settings: &RedisSettings) {
    let keys = crate::redis_store::Keys::new(settings);
    let mut redis = crate::redis_store::connect(settings)
        .await
        .expect("Redis answers");
    let () = redis::Script::new(
        "local keys = redis.call('KEYS', ARGV[1])
         for i = 1, #keys, 5000 do
           redis.call('UNLINK', unpack(keys, i, math.min(i + 4999, #keys)))
         end",
    )
    .arg(keys.everything())
    .invoke_async(&mut redis)
    .await
    .expect("Redis runs the script");
}

/// Asserts that `binary --help` lists each of `commands`, and that each answers `--help` of
/// its own: the operators' command line, checked without settings or services.
pub fn assert_help_lists(binary: &str, commands: &[&str]) {
    let usage = help(binary, &[]);
    assert!(usage.contains("Usage:"), "{usage}");
    for command in commands {
        assert!(usage.contains(command), "{command} is listed: {usage}");
        assert!(help(binary, &[command]).contains("Usage:"));
    }
}

/// What `binary` prints for `<args> --help`, run without settings or services; panics unless
/// it succeeds. For the tests of the operators' command lines.
pub fn help(binary: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(binary)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{args:?} --help: {output:?}");
    String::from_utf8(output.stdout).expect("help is text")
}
