use actix_web::{get, web, HttpResponse};
use domain::UserId;
use infra::auth::Tokens;
use infra::http::{ok, ApiError, Params};
use serde::Serialize;

use crate::users::{UserCard, Users};

#[derive(Serialize)]
struct UserReply {
    user: UserCard,
}

#[get("/douyin/user/")]
async fn user_info(
    params: Params,
    tokens: web::Data<Tokens>,
    users: web::Data<Users>,
) -> Result<HttpResponse, ApiError> {
    let viewer = params.authenticated_user(&tokens)?;
    let id: UserId = params.parse("user_id")?;
    let user = users
        .card(viewer, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {id} does not exist")))?;
    Ok(ok(UserReply { user }))
}
