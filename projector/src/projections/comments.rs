//! Comments: rows in `comments` (the comment lists) and the video's `comment_count`.

use domain::comment::CommentEvent;
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;

use super::plan::{p, Plan};

pub fn plan(event: &PublishedEvent, keys: &Keys) -> Result<Plan, EnvelopeError> {
    let comment_id: i64 = event
        .aggregate_id
        .parse()
        .map_err(|_| EnvelopeError::BadAggregateId(event.event_id.clone()))?;
    Ok(match event.domain_event()? {
        CommentEvent::CommentPosted {
            video_id,
            user_id,
            content,
            posted_at,
            ..
        } => Plan::new()
            .sql(
                "INSERT INTO comments (id, video_id, user_id, content, posted_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                vec![
                    p(comment_id),
                    p(video_id.get()),
                    p(user_id.get()),
                    p(content.to_string()),
                    p(posted_at),
                ],
            )
            .redis(|change| change.hincr(keys.video(video_id.get()), "comment_count", 1)),
        CommentEvent::CommentDeleted { video_id, .. } => Plan::new()
            .sql(
                "UPDATE comments SET deleted_at = $2 WHERE id = $1",
                vec![p(comment_id), p(event.occurred_at.timestamp_millis())],
            )
            .redis(|change| change.hincr(keys.video(video_id.get()), "comment_count", -1)),
    })
}
