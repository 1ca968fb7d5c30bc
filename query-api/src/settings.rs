use std::net::SocketAddr;

use infra::settings::{
    from_env, listen_addr, AuthSettings, MediaSettings, ProxySettings, PublicSettings,
    ReadAfterWriteSettings, ReadStoreSettings, RedisSettings,
};

#[derive(Clone, Debug)]
pub struct Settings {
    /// `QUERY_API_ADDR`, 127.0.0.1:8082 by default.
    pub listen: SocketAddr,
    pub read_store: ReadStoreSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub public: PublicSettings,
    pub media: MediaSettings,
    /// Who the client is, in the logs.
    pub proxies: ProxySettings,
    /// With read after write on, no reply is kept in memory (see `startup`).
    pub read_after_write: ReadAfterWriteSettings,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            listen: listen_addr("QUERY_API_ADDR", ([127, 0, 0, 1], 8082).into())?,
            read_store: from_env()?,
            redis: from_env()?,
            auth: from_env()?,
            public: from_env()?,
            media: from_env()?,
            proxies: from_env()?,
            read_after_write: from_env()?,
        })
    }
}
