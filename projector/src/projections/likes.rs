//! Likes: rows in `likes` (the favorite lists), the likers' sets in Redis (`is_favorite`),
//! and three counters: the video's `favorite_count`, the liker's `favorite_count` and the
//! author's `total_favorited`.

use domain::like::{Like, LikeEvent};
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;

use super::plan::Plan;

pub fn plan(event: &PublishedEvent, keys: &Keys) -> Result<Plan, EnvelopeError> {
    Ok(match event.domain_event()? {
        LikeEvent::VideoLiked {
            video_id,
            user_id,
            video_author_id,
            liked_at,
        } => {
            let (video, user, author) = (video_id.get(), user_id.get(), video_author_id.get());
            super::aggregate_id_is(event, Like::id(video_id, user_id))?;
            Plan::new()
                .row(
                    "INSERT INTO likes (user_id, video_id, liked_at)
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])
                     ON CONFLICT (user_id, video_id) DO UPDATE SET liked_at = EXCLUDED.liked_at",
                    vec![user.into(), video.into(), liked_at.into()],
                )
                .redis(|change| counters(change, keys, video, user, author, 1))
        }
        LikeEvent::VideoUnliked {
            video_id,
            user_id,
            video_author_id,
        } => {
            let (video, user, author) = (video_id.get(), user_id.get(), video_author_id.get());
            super::aggregate_id_is(event, Like::id(video_id, user_id))?;
            Plan::new()
                .row(
                    "DELETE FROM likes
                      USING unnest($1::bigint[], $2::bigint[]) AS gone (user_id, video_id)
                      WHERE likes.user_id = gone.user_id AND likes.video_id = gone.video_id",
                    vec![user.into(), video.into()],
                )
                .redis(|change| counters(change, keys, video, user, author, -1))
        }
    })
}

fn counters(
    change: infra::redis_store::Change,
    keys: &Keys,
    video: i64,
    user: i64,
    author: i64,
    by: i64,
) -> infra::redis_store::Change {
    let change = change
        .hincr(keys.video(video), "favorite_count", by)
        .hincr(keys.user(user), "favorite_count", by)
        .hincr(keys.user(author), "total_favorited", by);
    if by > 0 {
        change.sadd(keys.likes(user), video)
    } else {
        change.srem(keys.likes(user), video)
    }
}
