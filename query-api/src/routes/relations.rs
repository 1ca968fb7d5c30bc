use actix_web::{get, web, HttpResponse};
use domain::UserId;
use http_api::auth::Tokens;
use http_api::cards::UserCard;
use http_api::http::{ok, ApiError, Params};
use serde::Serialize;

use super::existing_user;
use crate::reads::{FriendCard, MessageCard, Reads};

#[derive(Serialize)]
struct UserList<T> {
    user_list: Vec<T>,
}

/// The authenticated viewer and the existing user whose list is asked for.
async fn list_of(
    params: &Params,
    tokens: &Tokens,
    reads: &Reads,
) -> Result<(UserId, UserId), ApiError> {
    let viewer = params.authenticated_user(tokens)?;
    let user: UserId = params.parse("user_id")?;
    existing_user(reads, viewer, user).await?;
    Ok((viewer, user))
}

#[get("/douyin/relation/follow/list/")]
async fn following(
    params: Params,
    tokens: web::Data<Tokens>,
    reads: web::Data<Reads>,
) -> Result<HttpResponse, ApiError> {
    let (viewer, user) = list_of(&params, &tokens, &reads).await?;
    let user_list: Vec<UserCard> = reads.following(Some(viewer), user).await?;
    Ok(ok(UserList { user_list }))
}

#[get("/douyin/relation/follower/list/")]
async fn followers(
    params: Params,
    tokens: web::Data<Tokens>,
    reads: web::Data<Reads>,
) -> Result<HttpResponse, ApiError> {
    let (viewer, user) = list_of(&params, &tokens, &reads).await?;
    let user_list: Vec<UserCard> = reads.followers(Some(viewer), user).await?;
    Ok(ok(UserList { user_list }))
}

#[get("/douyin/relation/friend/list/")]
async fn friends(
    params: Params,
    tokens: web::Data<Tokens>,
    reads: web::Data<Reads>,
) -> Result<HttpResponse, ApiError> {
    let (viewer, user) = list_of(&params, &tokens, &reads).await?;
    let user_list: Vec<FriendCard> = reads.friends(viewer, user).await?;
    Ok(ok(UserList { user_list }))
}

#[derive(Serialize)]
struct Chat {
    message_list: Vec<MessageCard>,
}

#[get("/douyin/message/chat/")]
async fn chat(
    params: Params,
    tokens: web::Data<Tokens>,
    reads: web::Data<Reads>,
) -> Result<HttpResponse, ApiError> {
    let viewer = params.authenticated_user(&tokens)?;
    let other: UserId = params.parse("to_user_id")?;
    let after = params.parse_optional::<i64>("pre_msg_time")?.unwrap_or(0);
    let message_list = reads.chat(viewer, other, after).await?;
    Ok(ok(Chat { message_list }))
}
