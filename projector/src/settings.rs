use infra::settings::{from_env, KafkaSettings, ReadStoreSettings, RedisSettings};
use serde::Deserialize;

#[derive(Clone, Debug)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub read_store: ReadStoreSettings,
    pub redis: RedisSettings,
    pub group: GroupSettings,
}

/// `PROJECTOR_GROUP`: the Kafka consumer group; projectors in one group share the partitions.
#[derive(Clone, Debug, Deserialize)]
pub struct GroupSettings {
    #[serde(default = "default_group")]
    pub projector_group: String,
}

fn default_group() -> String {
    "douyin-projector".to_owned()
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            kafka: from_env()?,
            read_store: from_env()?,
            redis: from_env()?,
            group: from_env()?,
        })
    }
}
