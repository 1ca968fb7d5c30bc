use actix_web::{get, web, HttpResponse};
use domain::{UserId, VideoId};
use http_api::auth::Tokens;
use http_api::cards::{CommentCard, VideoCard};
use http_api::http::{ok, ApiError, Params};
use serde::Serialize;

use super::existing_user;
use crate::reads::Reads;

#[derive(Serialize)]
struct VideoList {
    video_list: Vec<VideoCard>,
}

#[get("/douyin/publish/list/")]
async fn published(
    params: Params,
    tokens: web::Data<Tokens>,
    reads: web::Data<Reads>,
) -> Result<HttpResponse, ApiError> {
    let viewer = params.authenticated_user(&tokens)?;
    let user: UserId = params.parse("user_id")?;
    existing_user(&reads, viewer, user).await?;
    let video_list = reads.published(Some(viewer), user).await?;
    Ok(ok(VideoList { video_list }))
}

#[get("/douyin/favorite/list/")]
async fn liked(
    params: Params,
    tokens: web::Data<Tokens>,
    reads: web::Data<Reads>,
) -> Result<HttpResponse, ApiError> {
    let viewer = params.authenticated_user(&tokens)?;
    let user: UserId = params.parse("user_id")?;
    existing_user(&reads, viewer, user).await?;
    let video_list = reads.liked(Some(viewer), user).await?;
    Ok(ok(VideoList { video_list }))
}

#[derive(Serialize)]
struct CommentList {
    comment_list: Vec<CommentCard>,
}

#[get("/douyin/comment/list/")]
async fn comments(
    params: Params,
    tokens: web::Data<Tokens>,
    reads: web::Data<Reads>,
) -> Result<HttpResponse, ApiError> {
    let viewer = params.viewer(&tokens);
    let video: VideoId = params.parse("video_id")?;
    if !reads.video_exists(video).await? {
        return Err(ApiError::NotFound(format!("video {video} does not exist")));
    }
    let comment_list = reads.comments(viewer, video).await?;
    Ok(ok(CommentList { comment_list }))
}
