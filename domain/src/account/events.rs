use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::PasswordHash;
use crate::UserId;

/// Events of the `account` aggregate. The password hash is kept in the event store only: it
/// is removed from what is published (see [`crate::published`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountOpened {
        user_id: UserId,
        password_hash: PasswordHash,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AccountOpened { .. } => "AccountOpened".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
