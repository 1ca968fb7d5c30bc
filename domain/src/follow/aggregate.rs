use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{FollowCommand, FollowError, FollowEvent};
use crate::UserId;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follow {
    following: bool,
}

impl Follow {
    /// The aggregate id of `follower` following `followee`.
    pub fn id(follower: UserId, followee: UserId) -> String {
        format!("{follower}:{followee}")
    }

    pub fn decide(&self, command: FollowCommand) -> Result<Vec<FollowEvent>, FollowError> {
        match command {
            FollowCommand::Follow {
                follower, followee, ..
            }
            | FollowCommand::Unfollow { follower, followee }
                if follower == followee =>
            {
                Err(FollowError::Yourself)
            }
            FollowCommand::Follow {
                follower,
                followee,
                at,
            } if !self.following => Ok(vec![FollowEvent::UserFollowed {
                follower_id: follower,
                followee_id: followee,
                followed_at: at,
            }]),
            FollowCommand::Unfollow { follower, followee } if self.following => {
                Ok(vec![FollowEvent::UserUnfollowed {
                    follower_id: follower,
                    followee_id: followee,
                }])
            }
            // Already as asked.
            _ => Ok(vec![]),
        }
    }
}

impl Aggregate for Follow {
    const TYPE: &'static str = "follow";
    type Command = FollowCommand;
    type Event = FollowEvent;
    type Error = FollowError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        crate::record(self, sink, events).await
    }

    fn apply(&mut self, event: Self::Event) {
        self.following = matches!(event, FollowEvent::UserFollowed { .. });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> UserId {
        UserId::try_from(id).unwrap()
    }

    fn follow(follower: i64, followee: i64) -> FollowCommand {
        FollowCommand::Follow {
            follower: user(follower),
            followee: user(followee),
            at: 1,
        }
    }

    fn unfollow() -> FollowCommand {
        FollowCommand::Unfollow {
            follower: user(1),
            followee: user(2),
        }
    }

    fn given(commands: Vec<FollowCommand>) -> Follow {
        let mut follow = Follow::default();
        for command in commands {
            for event in follow.decide(command).unwrap() {
                follow.apply(event);
            }
        }
        follow
    }

    #[test]
    fn following_records_a_follow_once() {
        assert_eq!(given(vec![]).decide(follow(1, 2)).unwrap().len(), 1);
        assert!(given(vec![follow(1, 2)])
            .decide(follow(1, 2))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn unfollowing_a_stranger_records_nothing() {
        assert!(given(vec![]).decide(unfollow()).unwrap().is_empty());
        assert_eq!(
            given(vec![follow(1, 2)]).decide(unfollow()).unwrap(),
            vec![FollowEvent::UserUnfollowed {
                follower_id: user(1),
                followee_id: user(2)
            }]
        );
    }

    #[test]
    fn nobody_follows_themselves() {
        assert_eq!(
            given(vec![]).decide(follow(1, 1)),
            Err(FollowError::Yourself)
        );
    }
}
