//! Where the errors of the write side become the client's envelope.

use std::time::Duration;

use http_api::auth::PasswordCheckError;
use http_api::http::ApiError;

use crate::accounts::AccountsError;
use crate::writes::WriteError;

/// A busy moment (every password slot taken, a race lost eight times) passes within a second.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

impl From<AccountsError> for ApiError {
    fn from(error: AccountsError) -> Self {
        match error {
            AccountsError::NameTaken => Self::Conflict(error.to_string()),
            AccountsError::WrongCredentials => Self::Unauthenticated(error.to_string()),
            AccountsError::PasswordCheck(PasswordCheckError::Busy { .. }) => Self::Busy {
                retry_after: BUSY_RETRY_AFTER,
            },
            AccountsError::Store(store) => store.into(),
            AccountsError::PasswordCheck(_) => Self::internal(error),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::NoSuchVideo(_) | WriteError::NoSuchUser(_) | WriteError::NotFound(_) => {
                Self::NotFound(error.to_string())
            }
            WriteError::Refused(_) => Self::InvalidParameter(error.to_string()),
            WriteError::Forbidden(_) => Self::Forbidden(error.to_string()),
            WriteError::Busy => Self::Busy {
                retry_after: BUSY_RETRY_AFTER,
            },
            WriteError::Unavailable(_) => Self::Unavailable(error.into()),
            WriteError::Store(_) => Self::internal(error),
        }
    }
}
