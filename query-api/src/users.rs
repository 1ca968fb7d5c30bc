//! User cards: the profile from Postgres, the counters from Redis.

use domain::UserId;
use infra::redis_store::Keys;
use infra::settings::PublicSettings;
use redis::aio::ConnectionManager;
use serde::Serialize;

/// Paths of the images a user has until they choose their own.
pub const DEFAULT_AVATAR: &str = "/static/avatar.png";
pub const DEFAULT_BACKGROUND: &str = "/static/background.png";

/// The `User` object of the client API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserCard {
    pub id: i64,
    pub name: String,
    pub follow_count: i64,
    pub follower_count: i64,
    pub is_follow: bool,
    pub avatar: String,
    pub background_image: String,
    pub signature: String,
    pub total_favorited: i64,
    pub work_count: i64,
    pub favorite_count: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("read store: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("read store connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("counters: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Counter fields of a user's hash in Redis, in `UserCard` order.
const COUNTERS: [&str; 5] = [
    "follow_count",
    "follower_count",
    "total_favorited",
    "work_count",
    "favorite_count",
];

pub struct Users {
    pool: deadpool_postgres::Pool,
    redis: ConnectionManager,
    keys: Keys,
    public: PublicSettings,
}

impl Users {
    pub fn new(
        pool: deadpool_postgres::Pool,
        redis: ConnectionManager,
        keys: Keys,
        public: PublicSettings,
    ) -> Self {
        Self {
            pool,
            redis,
            keys,
            public,
        }
    }

    /// The card of `id`, as `viewer` sees it; None when no such user is registered.
    pub async fn card(&self, _viewer: UserId, id: UserId) -> Result<Option<UserCard>, ReadError> {
        let profile = async {
            let client = self.pool.get().await?;
            let row = client
                .query_opt(
                    "SELECT name, signature, avatar, background_image FROM users WHERE id = $1",
                    &[&id.get()],
                )
                .await?;
            Ok::<_, ReadError>(row)
        };
        let counters = async {
            let mut redis = self.redis.clone();
            let values: Vec<Option<i64>> = redis::cmd("HMGET")
                .arg(self.keys.user_counts(id.get()))
                .arg(&COUNTERS)
                .query_async(&mut redis)
                .await?;
            Ok::<_, ReadError>(values)
        };
        let (profile, counters) = tokio::try_join!(profile, counters)?;
        let Some(row) = profile else {
            return Ok(None);
        };
        let count = |index: usize| counters.get(index).copied().flatten().unwrap_or(0);
        let image = |column: &str, default: &str| {
            let stored: Option<String> = row.get(column);
            stored.unwrap_or_else(|| self.public.url(default))
        };
        Ok(Some(UserCard {
            id: id.get(),
            name: row.get("name"),
            follow_count: count(0),
            follower_count: count(1),
            // Following is not in the read models yet: nobody follows anybody.
            is_follow: false,
            avatar: image("avatar", DEFAULT_AVATAR),
            background_image: image("background_image", DEFAULT_BACKGROUND),
            signature: row.get("signature"),
            total_favorited: count(2),
            work_count: count(3),
            favorite_count: count(4),
        }))
    }
}
