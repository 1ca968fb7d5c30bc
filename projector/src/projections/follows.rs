//! Follows: rows in `follows` (follow, follower and friend lists), the follower's set in
//! Redis (`is_follow`), and both users' counters.

use domain::follow::{Follow, FollowEvent};
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;

use super::plan::Plan;

pub fn plan(event: &PublishedEvent, keys: &Keys) -> Result<Plan, EnvelopeError> {
    Ok(match event.domain_event()? {
        FollowEvent::UserFollowed {
            follower_id,
            followee_id,
            followed_at,
        } => {
            super::aggregate_id_is(event, Follow::id(follower_id, followee_id))?;
            let (follower, followee) = (follower_id.get(), followee_id.get());
            Plan::new()
                .row(
                    "INSERT INTO follows (follower_id, followee_id, followed_at)
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])
                     ON CONFLICT DO NOTHING",
                    vec![follower.into(), followee.into(), followed_at.into()],
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
            super::aggregate_id_is(event, Follow::id(follower_id, followee_id))?;
            let (follower, followee) = (follower_id.get(), followee_id.get());
            Plan::new()
                .row(
                    "DELETE FROM follows
                      USING unnest($1::bigint[], $2::bigint[]) AS gone (follower_id, followee_id)
                      WHERE follows.follower_id = gone.follower_id
                        AND follows.followee_id = gone.followee_id",
                    vec![follower.into(), followee.into()],
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
