//! Published videos: a row in `videos`, the card and the feed entry in Redis, and the
//! author's `work_count`.

use domain::video::VideoEvent;
use infra::envelope::{EnvelopeError, PublishedEvent};
use infra::redis_store::Keys;

use super::plan::Plan;

pub fn plan(event: &PublishedEvent, keys: &Keys) -> Result<Plan, EnvelopeError> {
    let video_id = super::numeric_aggregate_id(event)?;
    Ok(match event.domain_event()? {
        VideoEvent::VideoPublished {
            author_id,
            title,
            video_key,
            cover_key,
            published_at,
        } => {
            let author_id = author_id.get();
            Plan::new()
                .row(
                    "INSERT INTO videos (id, author_id, title, video_key, cover_key, published_at)
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                          $5::text[], $6::bigint[])
                     ON CONFLICT (id) DO NOTHING",
                    vec![
                        video_id.into(),
                        author_id.into(),
                        title.to_string().into(),
                        video_key.clone().into(),
                        cover_key.clone().into(),
                        published_at.into(),
                    ],
                )
                .redis(|change| {
                    change
                        .hset(
                            keys.video(video_id),
                            &[
                                ("author_id", author_id.to_string()),
                                ("title", title.to_string()),
                                ("video_key", video_key),
                                ("cover_key", cover_key.unwrap_or_default()),
                                ("published_at", published_at.to_string()),
                            ],
                        )
                        .zadd(keys.feed(), published_at, video_id)
                        .hincr(keys.user(author_id), "work_count", 1)
                })
        }
    })
}
