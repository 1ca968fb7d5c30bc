//! What every write shares: running a command with retries when another request changed the
//! same aggregate first, the existence checks answered from the event store, the clock, and
//! the errors of the write side.

use cqrs_es::{Aggregate, AggregateError};
use domain::user::User;
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
        match cqrs.execute(id, command.clone()).await {
            Ok(()) => return Ok(()),
            Err(AggregateError::AggregateConflict) => continue,
            Err(AggregateError::UserError(error)) => return Err(refusal(error)),
            Err(error) => return Err(WriteError::of_store(error)),
        }
    }
    Err(WriteError::Busy)
}

/// The author of video `id`, from its aggregate: the read models may lag behind.
pub async fn video_author(store: &EventStore, id: VideoId) -> Result<UserId, WriteError> {
    let video: Video = store
        .load(&id.to_string())
        .await
        .map_err(WriteError::of_store)?;
    video.author().ok_or(WriteError::NoSuchVideo(id))
}

/// Fails unless user `id` is registered, from its aggregate.
pub async fn existing_user(store: &EventStore, id: UserId) -> Result<(), WriteError> {
    let user: User = store
        .load(&id.to_string())
        .await
        .map_err(WriteError::of_store)?;
    if user.is_registered() {
        Ok(())
    } else {
        Err(WriteError::NoSuchUser(id))
    }
}

/// The clock, in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
