//! Redis read models: counters (and, later, timelines and membership sets).

use redis::aio::ConnectionManager;

use crate::settings::{expose, RedisSettings};

pub async fn connect(settings: &RedisSettings) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(expose(&settings.redis_url))?;
    Ok(ConnectionManager::new(client).await?)
}

/// Every Redis key we use, under `REDIS_KEY_PREFIX`.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(settings: &RedisSettings) -> Self {
        Self {
            prefix: settings.redis_key_prefix.clone(),
        }
    }

    /// Hash of a user's counters: `follow_count`, `follower_count`, `total_favorited`,
    /// `work_count`, `favorite_count`. A missing field is zero.
    pub fn user_counts(&self, user_id: i64) -> String {
        format!("{}user:{}:counts", self.prefix, user_id)
    }
}
