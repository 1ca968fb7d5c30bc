use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::UserId;

/// Events of the `follow` aggregate; their JSON is part of the public contract
/// (docs/events.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FollowEvent {
    UserFollowed {
        follower_id: UserId,
        followee_id: UserId,
        /// Epoch milliseconds.
        followed_at: i64,
    },
    UserUnfollowed {
        follower_id: UserId,
        followee_id: UserId,
    },
}

impl DomainEvent for FollowEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserFollowed { .. } => "UserFollowed".to_owned(),
            Self::UserUnfollowed { .. } => "UserUnfollowed".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
