//! Where the errors of the write side become the client's envelope.

use infra::http::ApiError;

use crate::accounts::AccountsError;
use crate::writes::WriteError;

impl From<AccountsError> for ApiError {
    fn from(error: AccountsError) -> Self {
        match error {
            AccountsError::NameTaken => Self::Conflict(error.to_string()),
            AccountsError::WrongCredentials => Self::Unauthenticated(error.to_string()),
            AccountsError::Store(_) | AccountsError::Hashing => Self::internal(error),
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
            WriteError::Busy => Self::Unavailable(error.into()),
            WriteError::Store(_) => Self::internal(error),
        }
    }
}
