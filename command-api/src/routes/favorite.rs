use actix_web::{post, web, HttpResponse};
use domain::VideoId;
use http_api::auth::Tokens;
use http_api::http::{done, ApiError, Params};
use http_api::rate_limit::RateLimits;

use super::{on_off, writer};
use crate::likes::Likes;

#[post("/douyin/favorite/action/")]
async fn favorite(
    params: Params,
    tokens: web::Data<Tokens>,
    limits: web::Data<RateLimits>,
    likes: web::Data<Likes>,
) -> Result<HttpResponse, ApiError> {
    let user = writer(&params, &tokens, &limits).await?;
    let video: VideoId = params.parse("video_id")?;
    let liked = on_off(&params, "like", "unlike")?;
    likes.set(user, video, liked).await?;
    Ok(done())
}
