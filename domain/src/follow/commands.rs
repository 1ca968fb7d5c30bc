use crate::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowCommand {
    Follow {
        follower: UserId,
        followee: UserId,
        at: i64,
    },
    Unfollow {
        follower: UserId,
        followee: UserId,
    },
}
