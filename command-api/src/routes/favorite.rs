use actix_web::{post, web, HttpResponse};
use domain::VideoId;
use infra::auth::Tokens;
use infra::http::{done, ApiError, Params};

use super::on_off;
use crate::likes::Likes;

#[post("/douyin/favorite/action/")]
async fn favorite(
    params: Params,
    tokens: web::Data<Tokens>,
    likes: web::Data<Likes>,
) -> Result<HttpResponse, ApiError> {
    let user = params.authenticated_user(&tokens)?;
    let video: VideoId = params.parse("video_id")?;
    let liked = on_off(&params, "like", "unlike")?;
    likes.set(user, video, liked).await?;
    Ok(done())
}
