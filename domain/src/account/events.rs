use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PasswordHash;
use crate::UserId;

/// Events of the `account` aggregate. The password hash is kept in the event store only: it
/// is removed from what is published (see [`crate::published`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccountEvent {
    AccountOpened {
        user_id: UserId,
        /// Never published: not in the published schema either.
        #[schemars(skip)]
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
