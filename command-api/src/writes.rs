//! What every write shares: running a command with retries when another request changed the
//! same aggregate first, the existence checks answered from the event store, the clock, and
//! the errors of the write side.

use cqrs_es::{Aggregate, AggregateError};
use domain::user::{User, UserName};
use domain::video::Video;
use domain::{UserId, VideoId};
use infra::event_store::{self, EventStore};
use postgres_es::PostgresCqrs;

/// Aggregates whose histories grow without bound (a chat by one event a message, a like or a
/// follow by one event a toggle) are loaded from their latest snapshot and the events after
/// it, so that a command costs the same on the thousandth toggle as on the first.
pub const SNAPSHOT_EVERY: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("video {0} does not exist")]
    NoSuchVideo(VideoId),
    #[error("user {0} does not exist")]
    NoSuchUser(UserId),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("too many simultaneous changes to the same thing, please try again")]
    Busy,
    /// The event store did not answer in time, or went away.
    #[error("event store unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    #[error("event store: {0}")]
    Store(#[source] anyhow::Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(error: sqlx::Error) -> Self {
        if event_store::is_unavailable(&error) {
            Self::Unavailable(error.into())
        } else {
            Self::Store(error.into())
        }
    }
}

impl WriteError {
    /// Whether the command may have committed all the same: the event store went away, or
    /// failed, after it may have received the commit (the connection dropped before its
    /// answer). A refusal, or a race lost too often, never committed.
    pub fn may_have_committed(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Store(_))
    }

    /// A command's failure other than a refusal of the domain's, its cause kept.
    pub fn of_store<E>(error: AggregateError<E>) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        if event_store::aggregate_unavailable(&error) {
            Self::Unavailable(error.into())
        } else {
            Self::Store(error.into())
        }
    }
}

/// How often a command is retried after losing a race on its aggregate. Each retry decides
/// again on the state the winner left, so a lost race usually ends in "nothing to do".
const ATTEMPTS: usize = 8;

/// Runs `command` on aggregate `id`, deciding again on fresh state when a concurrent command
/// on the same aggregate committed first. Domain refusals are mapped by `refusal`.
pub async fn execute<A>(
    cqrs: &PostgresCqrs<A>,
    id: &str,
    command: A::Command,
    refusal: impl Fn(A::Error) -> WriteError,
) -> Result<(), WriteError>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: Send + Sync + 'static,
{
    for _ in 0..ATTEMPTS {
        match event_store::record(cqrs, id, command.clone()).await {
            Ok(()) => return Ok(()),
            Err(AggregateError::AggregateConflict) => continue,
            Err(AggregateError::UserError(error)) => return Err(refusal(error)),
            Err(error) => return Err(WriteError::of_store(error)),
        }
    }
    Err(WriteError::Busy)
}

/// How many videos' authors, and users' names, [`Facts`] keeps: about 10 MiB at most.
const FACTS_KEPT: u64 = 100_000;

/// What the event store says of videos and users, for the existence checks of writes. Only
/// what can never change once true is kept in memory: a video is published once and never
/// changes hands, and a user registers once under a name kept for ever (no event of either
/// aggregate undoes or alters its first). So a kept answer is as authoritative as a fresh
/// read, and a like, comment, follow or message on a known video or user costs no read of
/// its history. A video or user not found is read again every time: it may exist a moment
/// later.
#[derive(Clone)]
pub struct Facts {
    store: EventStore,
    authors: moka::sync::Cache<VideoId, UserId>,
    names: moka::sync::Cache<UserId, UserName>,
}

impl Facts {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            authors: moka::sync::Cache::new(FACTS_KEPT),
            names: moka::sync::Cache::new(FACTS_KEPT),
        }
    }

    /// The author of video `id`.
    pub async fn video_author(&self, id: VideoId) -> Result<UserId, WriteError> {
        if let Some(author) = self.authors.get(&id) {
            return Ok(author);
        }
        let video: Video = self
            .store
            .load(&id.to_string())
            .await
            .map_err(WriteError::of_store)?;
        let author = video.author().ok_or(WriteError::NoSuchVideo(id))?;
        self.authors.insert(id, author);
        Ok(author)
    }

    /// The name of user `id`; fails unless the user is registered.
    pub async fn user_name(&self, id: UserId) -> Result<UserName, WriteError> {
        if let Some(name) = self.names.get(&id) {
            return Ok(name);
        }
        let user: User = self
            .store
            .load(&id.to_string())
            .await
            .map_err(WriteError::of_store)?;
        let name = user.name().cloned().ok_or(WriteError::NoSuchUser(id))?;
        self.names.insert(id, name.clone());
        Ok(name)
    }

    /// Fails unless user `id` is registered.
    pub async fn existing_user(&self, id: UserId) -> Result<(), WriteError> {
        self.user_name(id).await.map(drop)
    }
}

/// The clock, in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
