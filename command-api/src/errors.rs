//! Where the errors of the write side become the client's envelope.

use infra::http::ApiError;

use crate::accounts::AccountsError;

impl From<AccountsError> for ApiError {
    fn from(error: AccountsError) -> Self {
        match error {
            AccountsError::NameTaken => Self::Conflict(error.to_string()),
            AccountsError::WrongCredentials => Self::Unauthenticated(error.to_string()),
            AccountsError::Store(_) | AccountsError::Hashing => Self::internal(error),
        }
    }
}
