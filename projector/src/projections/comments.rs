//! Comments: rows in `comments` (the comment lists) and the video's `comment_count`.

use domain::comment::CommentEvent;
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;

use super::plan::Plan;

pub fn plan(event: &PublishedEvent, keys: &Keys) -> Result<Plan, EnvelopeError> {
    let comment_id = super::numeric_aggregate_id(event)?;
    Ok(match event.domain_event()? {
        CommentEvent::CommentPosted {
            video_id,
            user_id,
            content,
            posted_at,
            ..
        } => Plan::new()
            .row(
                "INSERT INTO comments (id, video_id, user_id, content, posted_at)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
                                      $5::bigint[])
                 ON CONFLICT (id) DO NOTHING",
                vec![
                    comment_id.into(),
                    video_id.get().into(),
                    user_id.get().into(),
                    content.to_string().into(),
                    posted_at.into(),
                ],
            )
            .redis(|change| change.hincr(keys.video(video_id.get()), "comment_count", 1)),
        CommentEvent::CommentDeleted { video_id, .. } => Plan::new()
            .row(
                "UPDATE comments SET deleted_at = gone.deleted_at
                   FROM unnest($1::bigint[], $2::bigint[]) AS gone (id, deleted_at)
                  WHERE comments.id = gone.id",
                vec![
                    comment_id.into(),
                    event.occurred_at.timestamp_millis().into(),
                ],
            )
            .redis(|change| change.hincr(keys.video(video_id.get()), "comment_count", -1)),
    })
}
