//! Following and unfollowing users.

use domain::follow::{Follow, FollowCommand};
use domain::UserId;
use infra::event_store::EventStore;
use postgres_es::PostgresCqrs;

use crate::writes::{execute, now_ms, Facts, WriteError, SNAPSHOT_EVERY};

pub struct Follows {
    facts: Facts,
    follows: PostgresCqrs<Follow>,
}

impl Follows {
    pub fn new(store: &EventStore, facts: Facts) -> Self {
        Self {
            follows: store.snapshotting_cqrs(SNAPSHOT_EVERY, ()),
            facts,
        }
    }

    /// Makes `follower` follow `followee` (`on`) or not; asking for what already is changes
    /// nothing.
    pub async fn set(
        &self,
        follower: UserId,
        followee: UserId,
        on: bool,
    ) -> Result<(), WriteError> {
        let command = if on {
            FollowCommand::Follow {
                follower,
                followee,
                at: now_ms(),
            }
        } else {
            FollowCommand::Unfollow { follower, followee }
        };
        if follower != followee {
            self.facts.existing_user(followee).await?;
        }
        execute(
            &self.follows,
            &Follow::id(follower, followee),
            command,
            |error| WriteError::Refused(error.to_string()),
        )
        .await
    }
}
