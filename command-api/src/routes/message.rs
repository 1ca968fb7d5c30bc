use actix_web::{post, web, HttpResponse};
use domain::text::MessageText;
use domain::UserId;
use http_api::auth::Tokens;
use http_api::http::{done, ApiError, Params};
use http_api::rate_limit::RateLimits;

use super::writer;
use crate::messages::Messages;

#[post("/douyin/message/action/")]
async fn message(
    params: Params,
    tokens: web::Data<Tokens>,
    limits: web::Data<RateLimits>,
    messages: web::Data<Messages>,
) -> Result<HttpResponse, ApiError> {
    let from = writer(&params, &tokens, &limits).await?;
    let to: UserId = params.parse("to_user_id")?;
    match params.required("action_type")? {
        "1" => {}
        other => {
            return Err(ApiError::InvalidParameter(format!(
                "`action_type` must be 1 (send), not {other:?}"
            )))
        }
    }
    let content = params.parse_with("content", MessageText::parse)?;
    messages.send(from, to, content).await?;
    Ok(done())
}
