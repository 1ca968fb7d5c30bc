pub use infra::settings::GroupSettings;
use infra::settings::{from_env, KafkaSettings, ReadStoreSettings, RedisSettings};

#[derive(Clone, Debug)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub read_store: ReadStoreSettings,
    pub redis: RedisSettings,
    pub group: GroupSettings,
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
