use std::net::SocketAddr;

pub use infra::settings::GroupSettings;
use infra::settings::{from_env, listen_addr, KafkaSettings, ReadStoreSettings, RedisSettings};

#[derive(Clone, Debug)]
pub struct Settings {
    /// `PROJECTOR_ADDR`, 127.0.0.1:8083 by default: where its `/metrics`, `/readyz` and
    /// `/healthz` answer (it serves nothing else).
    pub listen: SocketAddr,
    pub kafka: KafkaSettings,
    pub read_store: ReadStoreSettings,
    pub redis: RedisSettings,
    pub group: GroupSettings,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            listen: listen_addr("PROJECTOR_ADDR", ([127, 0, 0, 1], 8083).into())?,
            kafka: from_env()?,
            read_store: from_env()?,
            redis: from_env()?,
            group: from_env()?,
        })
    }
}
