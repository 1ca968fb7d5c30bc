pub mod answer;
mod comment;
mod favorite;
mod message;
mod publish;
mod relation;
mod user;

use actix_web::web;
use domain::UserId;
use http_api::auth::Tokens;
use http_api::http::{ApiError, Params};
use http_api::rate_limit::{Limit, RateLimits, Subject};

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(user::register)
        .service(user::login)
        .service(publish::publish)
        .service(favorite::favorite)
        .service(comment::comment)
        .service(relation::relation)
        .service(message::message);
}

/// `action_type` of a toggle: 1 turns it on, 2 off.
fn on_off(params: &Params, on: &str, off: &str) -> Result<bool, ApiError> {
    match params.required("action_type")? {
        "1" => Ok(true),
        "2" => Ok(false),
        other => Err(ApiError::InvalidParameter(format!(
            "`action_type` must be 1 ({on}) or 2 ({off}), not {other:?}"
        ))),
    }
}

/// The user a write is made by: the holder of the token, once their rate allows one more.
async fn writer(params: &Params, tokens: &Tokens, limits: &RateLimits) -> Result<UserId, ApiError> {
    let user = params.authenticated_user(tokens)?;
    limits.take(Limit::Write, &Subject::user(user)).await?;
    Ok(user)
}
