use super::PasswordHash;
use crate::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    /// Claims the account's name (the aggregate id) for a newly allocated user id.
    Open {
        user_id: UserId,
        password_hash: PasswordHash,
    },
}
