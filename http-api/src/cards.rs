//! The `User` and `Video` objects of the client API, hydrated from the Redis read models: a
//! page of videos and their authors, with counters and the viewer's flags, in two pipelined
//! round trips whatever the page's length.

use std::collections::HashMap;

use domain::UserId;
use redis::aio::ConnectionManager;
use redis::{RedisError, Value};
use serde::Serialize;

use infra::redis_store::{cached, Keys};
use infra::settings::PublicSettings;

/// Paths of the images shown until a user or video has its own.
pub const DEFAULT_AVATAR: &str = "/static/avatar.png";
pub const DEFAULT_BACKGROUND: &str = "/static/background.png";
pub const DEFAULT_COVER: &str = "/static/cover.jpg";

/// Where stored media is served, under the public base URL.
pub const MEDIA_PATH: &str = "/media/";

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VideoCard {
    pub id: i64,
    pub author: UserCard,
    pub play_url: String,
    pub cover_url: String,
    pub favorite_count: i64,
    pub comment_count: i64,
    pub is_favorite: bool,
    pub title: String,
    /// Not part of the client's `Video`; the feed's `next_time` is made from it.
    #[serde(skip)]
    pub published_at: i64,
}

/// A Redis hash as the reply holds it (a RESP3 map, or RESP2's flat array of names and
/// values), read in place: a card has about ten fields, fewer than it costs to build and hash
/// a map of them, and a feed page reads sixty hashes.
#[derive(Default)]
struct Hash<'a> {
    fields: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Hash<'a> {
    fn read(reply: &'a Value) -> Result<Self, RedisError> {
        let bytes = |value: &'a Value| match value {
            Value::BulkString(bytes) => Ok(bytes.as_slice()),
            Value::SimpleString(text) => Ok(text.as_bytes()),
            other => Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a hash field that is not a string",
                format!("{other:?}"),
            ))),
        };
        let fields = match reply {
            Value::Map(pairs) => pairs
                .iter()
                .map(|(name, value)| Ok((bytes(name)?, bytes(value)?)))
                .collect::<Result<_, RedisError>>()?,
            Value::Array(flat) => flat
                .chunks_exact(2)
                .map(|pair| Ok((bytes(&pair[0])?, bytes(&pair[1])?)))
                .collect::<Result<_, RedisError>>()?,
            Value::Nil => vec![],
            other => {
                return Err(RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "a hash",
                    format!("{other:?}"),
                )))
            }
        };
        Ok(Self { fields })
    }

    fn get(&self, field: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(name, _)| *name == field.as_bytes())
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

#[derive(Clone)]
pub struct Cards {
    redis: ConnectionManager,
    keys: Keys,
    public: PublicSettings,
}

impl Cards {
    /// A comment's `create_date` for a comment posted at `at` (epoch ms).
    pub fn comment_date(&self, at: i64) -> String {
        self.public.date(at)
    }

    pub fn new(redis: ConnectionManager, keys: Keys, public: PublicSettings) -> Self {
        Self {
            redis,
            keys,
            public,
        }
    }

    /// A connection to the Redis the cards are read from.
    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// The keys of the generation of the read models to read now (see [`Keys`]): a request
    /// resolves it once, and reads everything from it.
    pub async fn current_keys(&self) -> Result<Keys, RedisError> {
        infra::redis_store::current(&mut self.redis.clone(), &self.keys).await
    }

    /// Whether the read models of generation `keys` are whole (hold every event they say
    /// they do): not so in a Redis that restarted without its data, until it is rebuilt. A
    /// card missing from models that are not whole says nothing of whether it exists.
    pub async fn are_whole(&self, keys: &Keys) -> Result<bool, RedisError> {
        redis::cmd("EXISTS")
            .arg(keys.ready())
            .query_async(&mut self.redis.clone())
            .await
    }

    /// Cards of the users `ids` that are registered, as `viewer` sees them, by id.
    pub async fn users(
        &self,
        viewer: Option<UserId>,
        ids: &[i64],
    ) -> Result<HashMap<i64, UserCard>, RedisError> {
        let keys = self.current_keys().await?;
        self.users_in(&keys, viewer, ids).await
    }

    /// [`Self::users`] from the generation `keys` names (resolved by the caller).
    pub async fn users_in(
        &self,
        keys: &Keys,
        viewer: Option<UserId>,
        ids: &[i64],
    ) -> Result<HashMap<i64, UserCard>, RedisError> {
        Ok(self.users_and_likes(keys, viewer, ids, &[]).await?.0)
    }

    /// The cards of [`Self::users`] and, in the same round trip, whether `viewer` likes each
    /// of the videos `liked` (all false without a viewer).
    async fn users_and_likes(
        &self,
        keys: &Keys,
        viewer: Option<UserId>,
        ids: &[i64],
        liked: &[i64],
    ) -> Result<(HashMap<i64, UserCard>, Vec<bool>), RedisError> {
        if ids.is_empty() && liked.is_empty() {
            return Ok((HashMap::new(), vec![]));
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(keys.user(*id)).set_cache_config(cached());
        }
        // The flags are the viewer's own and change with its every like and follow: read
        // each time, never kept.
        let viewer_follows = viewer.filter(|_| !ids.is_empty());
        let viewer_likes = viewer.filter(|_| !liked.is_empty());
        if let Some(viewer) = viewer_follows {
            pipe.smismember(keys.following(viewer.get()), ids);
        }
        if let Some(viewer) = viewer_likes {
            pipe.smismember(keys.likes(viewer.get()), liked);
        }
        let mut replies: Vec<Value> = pipe.query_async(&mut self.redis.clone()).await?;
        let likes = flags(&mut replies, viewer_likes.is_some(), liked.len())?;
        let follows = flags(&mut replies, viewer_follows.is_some(), ids.len())?;
        let mut cards = HashMap::with_capacity(ids.len());
        for ((id, reply), is_follow) in ids.iter().zip(replies).zip(follows) {
            let hash = Hash::read(&reply)?;
            if let Some(card) = self.user_card(*id, &hash, is_follow) {
                cards.insert(*id, card);
            }
        }
        Ok((cards, likes))
    }

    /// The card of one user; None when not registered.
    pub async fn user(
        &self,
        viewer: Option<UserId>,
        id: i64,
    ) -> Result<Option<UserCard>, RedisError> {
        Ok(self.users(viewer, &[id]).await?.remove(&id))
    }

    /// Cards of the videos `ids`, in the order given, skipping any not (yet) in the read
    /// model, each with its author's card. The video hashes first (usually from the cache),
    /// then in one round trip the authors' hashes and the viewer's like and follow flags.
    pub async fn videos(
        &self,
        viewer: Option<UserId>,
        ids: &[i64],
    ) -> Result<Vec<VideoCard>, RedisError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let keys = self.current_keys().await?;
        self.videos_in(&keys, viewer, ids).await
    }

    /// [`Self::videos`] from the generation `keys` names (resolved by the caller, which read
    /// the ids there too).
    pub async fn videos_in(
        &self,
        keys: &Keys,
        viewer: Option<UserId>,
        ids: &[i64],
    ) -> Result<Vec<VideoCard>, RedisError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(keys.video(*id)).set_cache_config(cached());
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.redis.clone()).await?;
        let mut videos = Vec::with_capacity(ids.len());
        for (id, reply) in ids.iter().zip(&replies) {
            let hash = Hash::read(reply)?;
            let Some(author) = hash.get("author_id").and_then(|id| id.parse().ok()) else {
                continue;
            };
            videos.push((*id, author, hash));
        }
        let mut authors: Vec<i64> = videos.iter().map(|(_, author, _)| *author).collect();
        authors.sort_unstable();
        authors.dedup();
        let found: Vec<i64> = videos.iter().map(|(id, _, _)| *id).collect();
        let (authors, likes) = self.users_and_likes(keys, viewer, &authors, &found).await?;
        Ok(videos
            .into_iter()
            .zip(likes)
            .filter_map(|((id, author, hash), is_favorite)| {
                let author = authors.get(&author)?.clone();
                Some(self.video_card(id, author, &hash, is_favorite))
            })
            .collect())
    }

    /// The card of a user the read models do not hold yet: its name, default images, and
    /// counts of zero.
    pub fn new_user(&self, id: i64, name: &str) -> UserCard {
        let hash = Hash {
            fields: vec![(b"name".as_slice(), name.as_bytes())],
        };
        self.user_card(id, &hash, false)
            .expect("a card with a name is always made")
    }

    fn user_card(&self, id: i64, hash: &Hash, is_follow: bool) -> Option<UserCard> {
        let name = hash.get("name")?.to_owned();
        let image = |field: &str, default: &str| {
            hash.get(field)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| self.public.url(default))
        };
        Some(UserCard {
            id,
            name,
            follow_count: count(hash, "follow_count"),
            follower_count: count(hash, "follower_count"),
            is_follow,
            avatar: image("avatar", DEFAULT_AVATAR),
            background_image: image("background_image", DEFAULT_BACKGROUND),
            signature: hash
                .get("signature")
                .filter(|signature| !signature.is_empty())
                .unwrap_or(&self.public.default_signature)
                .to_owned(),
            total_favorited: count(hash, "total_favorited"),
            work_count: count(hash, "work_count"),
            favorite_count: count(hash, "favorite_count"),
        })
    }

    fn video_card(&self, id: i64, author: UserCard, hash: &Hash, is_favorite: bool) -> VideoCard {
        let key = |field: &str| hash.get(field).filter(|key| !key.is_empty());
        VideoCard {
            id,
            author,
            play_url: self.media_url(key("video_key").unwrap_or_default()),
            cover_url: key("cover_key")
                .map(|key| self.media_url(key))
                .unwrap_or_else(|| self.public.url(DEFAULT_COVER)),
            favorite_count: count(hash, "favorite_count"),
            comment_count: count(hash, "comment_count"),
            is_favorite,
            title: hash.get("title").unwrap_or_default().to_owned(),
            published_at: count(hash, "published_at"),
        }
    }

    pub fn media_url(&self, key: &str) -> String {
        self.public.url(&format!("{MEDIA_PATH}{key}"))
    }
}

/// Takes the trailing membership reply off `replies`, or all false when there is no viewer.
fn flags(replies: &mut Vec<Value>, present: bool, len: usize) -> Result<Vec<bool>, RedisError> {
    if !present {
        return Ok(vec![false; len]);
    }
    let reply = replies.pop().unwrap_or(Value::Nil);
    Ok(redis::from_redis_value(reply)?)
}

/// A counter; a missing one is zero, and one below zero (never written so) reads as zero.
fn count(hash: &Hash, field: &str) -> i64 {
    hash.get(field)
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
        .max(0)
}

/// The `Comment` object of the client API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommentCard {
    pub id: i64,
    pub user: UserCard,
    pub content: String,
    /// `mm-dd`, at `DATE_UTC_OFFSET`.
    pub create_date: String,
}
