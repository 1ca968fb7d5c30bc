//! Likes: rows in `likes` (the favorite lists), the likers' sets in Redis (`is_favorite`),
//! and three counters: the video's `favorite_count`, the liker's `favorite_count` and the
//! author's `total_favorited`.

use domain::like::LikeEvent;
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;

use super::plan::{p, Plan};

pub fn plan(event: &PublishedEvent, keys: &Keys) -> Result<Plan, EnvelopeError> {
    Ok(match event.domain_event()? {
        LikeEvent::VideoLiked {
            video_id,
            user_id,
            video_author_id,
            liked_at,
        } => {
            let (video, user, author) = (video_id.get(), user_id.get(), video_author_id.get());
            Plan::new()
                .sql(
                    "INSERT INTO likes (user_id, video_id, liked_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, video_id) DO UPDATE SET liked_at = EXCLUDED.liked_at",
                    vec![p(user), p(video), p(liked_at)],
                )
                .redis(|change| counters(change, keys, video, user, author, 1))
        }
        LikeEvent::VideoUnliked {
            video_id,
            user_id,
            video_author_id,
        } => {
            let (video, user, author) = (video_id.get(), user_id.get(), video_author_id.get());
            Plan::new()
                .sql(
                    "DELETE FROM likes WHERE user_id = $1 AND video_id = $2",
                    vec![p(user), p(video)],
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
