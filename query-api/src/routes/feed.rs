use actix_web::{get, web, HttpResponse};
use http_api::auth::Tokens;
use http_api::cards::VideoCard;
use http_api::http::{ok, ApiError, Params};
use serde::Serialize;

use crate::reads::Reads;

/// `latest_time` below this is in seconds: the client has been seen sending both.
const SECONDS_BELOW: i64 = 100_000_000_000;

#[derive(Serialize)]
struct Feed {
    video_list: Vec<VideoCard>,
    next_time: i64,
}

#[get("/douyin/feed/")]
async fn feed(
    params: Params,
    tokens: web::Data<Tokens>,
    reads: web::Data<Reads>,
) -> Result<HttpResponse, ApiError> {
    let viewer = params.viewer(&tokens);
    let now = chrono::Utc::now().timestamp_millis();
    let before = match params.parse_optional::<i64>("latest_time")? {
        Some(time) if time <= 0 => now,
        Some(time) if time < SECONDS_BELOW => time.saturating_mul(1000),
        Some(time) => time,
        None => now,
    };
    let video_list = reads.feed(viewer, before).await?;
    // Past the oldest video, the next page starts over from the newest.
    let next_time = video_list.last().map_or(now, |video| video.published_at);
    Ok(ok(Feed {
        video_list,
        next_time,
    }))
}
