//! `analytics`: an example consumer of the published events (docs/events.md), and what
//! docs/consuming-events.md describes.
//!
//! It reads every topic from the beginning in a consumer group of its own and keeps, per hour
//! of event time, the numbers a product team asks for first: videos published, likes given,
//! taken back and net, comments, follows, messages, sign-ups, active users and the ten most
//! liked videos. Each batch of messages is counted in one transaction of its own database
//! that also records which events it has seen, so a message delivered twice counts once; a
//! Kafka offset is stored only after that transaction commits, so a crash means reading again,
//! never losing.

pub mod consumer;
pub mod facts;
pub mod report;
pub mod store;
pub mod tally;

use infra::settings::{from_env, secret, KafkaSettings};
use secrecy::SecretString;
use serde::Deserialize;

pub use consumer::Analytics;
pub use store::{Outcome, Report, Store};

/// `ANALYTICS_DATABASE_URL`, `ANALYTICS_GROUP`: where the numbers are kept, and the consumer
/// group (its own: the projector's offsets say nothing of what analytics has counted).
#[derive(Clone, Debug, Deserialize)]
pub struct AnalyticsSettings {
    #[serde(default = "default_database_url")]
    pub analytics_database_url: SecretString,
    #[serde(default = "default_group")]
    pub analytics_group: String,
}

// As the services' defaults: no TLS to a Postgres on this machine.
fn default_database_url() -> SecretString {
    secret("postgres://postgres:postgres@127.0.0.1:5432/douyin_analytics?sslmode=disable")
}

fn default_group() -> String {
    "douyin-analytics".to_owned()
}

/// Everything `analytics` reads from the environment: its own two variables, and the
/// services' Kafka ones (`KAFKA_BROKERS`, `KAFKA_TOPIC_PREFIX`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub analytics: AnalyticsSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self {
            kafka: from_env()?,
            analytics: from_env()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("settings: {0}")]
    Settings(#[from] config::ConfigError),
    #[error("the analytics database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the analytics database's schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("a call to the broker did not finish: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}
