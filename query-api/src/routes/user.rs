use actix_web::{get, web, HttpResponse};
use domain::UserId;
use http_api::auth::Tokens;
use http_api::cards::UserCard;
use http_api::http::{ok, ApiError, Params};
use serde::Serialize;

use crate::reads::Reads;

#[derive(Serialize)]
struct UserReply {
    user: UserCard,
}

#[get("/douyin/user/")]
async fn user_info(
    params: Params,
    tokens: web::Data<Tokens>,
    reads: web::Data<Reads>,
) -> Result<HttpResponse, ApiError> {
    let viewer = params.authenticated_user(&tokens)?;
    // Without `user_id`, the token's own user (as the public test suites of this API ask).
    let id: UserId = params.parse_optional("user_id")?.unwrap_or(viewer);
    let user = reads
        .user(Some(viewer), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {id} does not exist")))?;
    Ok(ok(UserReply { user }))
}
