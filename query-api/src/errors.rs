//! Where the errors of the read side become the client's envelope.

use infra::http::ApiError;

use crate::reads::ReadError;

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Pool(_) => Self::Unavailable(error.into()),
            _ => Self::internal(error),
        }
    }
}
