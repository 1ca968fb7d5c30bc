mod comment;
mod favorite;
mod message;
mod publish;
mod relation;
mod user;

use actix_web::web;
use infra::http::{ApiError, Params};

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
