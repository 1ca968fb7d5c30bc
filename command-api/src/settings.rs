use std::net::SocketAddr;
use std::time::Duration;

use infra::settings::{
    from_env, listen_addr, AuthSettings, EventStoreSettings, KafkaSettings, MediaSettings,
    PasswordSettings, ProxySettings, PublicSettings, RateLimitSettings, ReadAfterWriteSettings,
    ReadStoreSettings, RedisSettings,
};
use serde::Deserialize;

#[derive(Clone, Debug)]
pub struct Settings {
    /// `COMMAND_API_ADDR`, 127.0.0.1:8081 by default.
    pub listen: SocketAddr,
    pub event_store: EventStoreSettings,
    pub kafka: KafkaSettings,
    pub auth: AuthSettings,
    pub relay: RelaySettings,
    pub media: MediaSettings,
    /// The comment route answers with the commenter's card, read from Redis.
    pub redis: RedisSettings,
    pub public: PublicSettings,
    pub passwords: PasswordSettings,
    pub rate_limits: RateLimitSettings,
    pub proxies: ProxySettings,
    pub read_after_write: ReadAfterWriteSettings,
    /// Where the projectors say what they applied (see `crate::readable`).
    pub read_store: ReadStoreSettings,
}

/// `OUTBOX_RELAY`: whether this process also publishes the outbox (`true` by default). Any
/// number of command APIs may run a relay; one at a time publishes. `LOCK_LEASE_MS` (30 s):
/// how long a relay that stopped answering (frozen, cut off) may keep the others waiting.
#[derive(Clone, Debug, Deserialize)]
pub struct RelaySettings {
    #[serde(default = "enabled")]
    pub outbox_relay: bool,
    #[serde(default = "infra::settings::default_lock_lease_ms")]
    pub lock_lease_ms: u64,
}

impl RelaySettings {
    pub fn lock_lease(&self) -> Duration {
        Duration::from_millis(self.lock_lease_ms.max(1))
    }
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            outbox_relay: true,
            lock_lease_ms: infra::settings::default_lock_lease_ms(),
        }
    }
}

fn enabled() -> bool {
    true
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            listen: listen_addr("COMMAND_API_ADDR", ([127, 0, 0, 1], 8081).into())?,
            event_store: from_env()?,
            kafka: from_env()?,
            auth: from_env()?,
            relay: from_env()?,
            media: from_env()?,
            redis: from_env()?,
            public: from_env()?,
            passwords: from_env()?,
            rate_limits: from_env()?,
            proxies: from_env()?,
            read_after_write: from_env()?,
            read_store: from_env()?,
        })
    }
}
