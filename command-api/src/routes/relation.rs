use actix_web::{post, web, HttpResponse};
use domain::UserId;
use http_api::auth::Tokens;
use http_api::http::{done, ApiError, Params};
use http_api::rate_limit::RateLimits;

use super::{on_off, writer};
use crate::follows::Follows;

#[post("/douyin/relation/action/")]
async fn relation(
    params: Params,
    tokens: web::Data<Tokens>,
    limits: web::Data<RateLimits>,
    follows: web::Data<Follows>,
) -> Result<HttpResponse, ApiError> {
    let follower = writer(&params, &tokens, &limits).await?;
    let followee: UserId = params.parse("to_user_id")?;
    let on = on_off(&params, "follow", "unfollow")?;
    follows.set(follower, followee, on).await?;
    Ok(done())
}
