//! Where the errors of the read side become the client's envelope.

use http_api::http::ApiError;

use crate::reads::ReadError;

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            // A dependency slow or away (a timeout, a closed connection): "try again", not a
            // fault of ours.
            _ if error.is_unavailable() => Self::Unavailable(error.into()),
            _ => Self::internal(error),
        }
    }
}
