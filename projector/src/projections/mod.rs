//! Read models, one module per aggregate whose events they follow.

mod users;

use cqrs_es::Aggregate;
use domain::user::User;
use infra::envelope::{EnvelopeError, PublishedEvent};

pub use users::UserProjection;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Delivered before: nothing changed.
    AlreadyApplied,
    /// An aggregate type no read model follows.
    Ignored,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event cannot be understood; retrying will not help.
    #[error("unreadable event: {0}")]
    Unreadable(#[from] EnvelopeError),
    /// The read store failed; the event is to be applied again.
    #[error("read store: {0}")]
    Store(String),
}

impl From<tokio_postgres::Error> for ProjectionError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Store(error.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for ProjectionError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Store(error.to_string())
    }
}

/// Every read model, by the aggregate type it follows.
pub struct Projections {
    users: UserProjection,
}

impl Projections {
    pub fn new(read_store: deadpool_postgres::Pool) -> Self {
        Self {
            users: UserProjection::new(read_store),
        }
    }

    /// The aggregate types whose topics the projector reads.
    pub fn aggregate_types() -> &'static [&'static str] {
        &[User::TYPE]
    }

    pub async fn apply(&self, event: &PublishedEvent) -> Result<Outcome, ProjectionError> {
        match event.aggregate_type.as_str() {
            User::TYPE => self.users.apply(event).await,
            _ => Ok(Outcome::Ignored),
        }
    }
}
