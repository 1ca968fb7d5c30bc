use actix_web::{post, web, HttpResponse};
use domain::UserId;
use infra::auth::Tokens;
use infra::http::{done, ApiError, Params};

use super::on_off;
use crate::follows::Follows;

#[post("/douyin/relation/action/")]
async fn relation(
    params: Params,
    tokens: web::Data<Tokens>,
    follows: web::Data<Follows>,
) -> Result<HttpResponse, ApiError> {
    let follower = params.authenticated_user(&tokens)?;
    let followee: UserId = params.parse("to_user_id")?;
    let on = on_off(&params, "follow", "unfollow")?;
    follows.set(follower, followee, on).await?;
    Ok(done())
}
