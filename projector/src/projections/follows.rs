//! Follows: rows in `follows` (follow, follower and friend lists), the follower's set in
//! Redis (`is_follow`), and both users' counters.

use domain::follow::FollowEvent;
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;

use super::plan::{p, Plan};

pub fn plan(event: &PublishedEvent, keys: &Keys) -> Result<Plan, EnvelopeError> {
    Ok(match event.domain_event()? {
        FollowEvent::UserFollowed {
            follower_id,
            followee_id,
            followed_at,
        } => {
            let (follower, followee) = (follower_id.get(), followee_id.get());
            Plan::new()
                .sql(
                    "INSERT INTO follows (follower_id, followee_id, followed_at)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    vec![p(follower), p(followee), p(followed_at)],
                )
                .redis(|change| {
                    change
                        .hincr(keys.user(follower), "follow_count", 1)
                        .hincr(keys.user(followee), "follower_count", 1)
                        .sadd(keys.following(follower), followee)
                })
        }
        FollowEvent::UserUnfollowed {
            follower_id,
            followee_id,
        } => {
            let (follower, followee) = (follower_id.get(), followee_id.get());
            Plan::new()
                .sql(
                    "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2",
                    vec![p(follower), p(followee)],
                )
                .redis(|change| {
                    change
                        .hincr(keys.user(follower), "follow_count", -1)
                        .hincr(keys.user(followee), "follower_count", -1)
                        .srem(keys.following(follower), followee)
                })
        }
    })
}
