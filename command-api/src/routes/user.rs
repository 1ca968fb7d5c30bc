use actix_web::{post, web, HttpResponse};
use domain::account::Password;
use domain::user::UserName;
use infra::http::{ok, ApiError, Params};
use serde::Serialize;

use crate::accounts::{Accounts, Session};

#[derive(Serialize)]
struct SessionReply {
    user_id: i64,
    token: String,
}

impl From<Session> for SessionReply {
    fn from(session: Session) -> Self {
        Self {
            user_id: session.user_id.get(),
            token: session.token,
        }
    }
}

#[post("/douyin/user/register/")]
async fn register(params: Params, accounts: web::Data<Accounts>) -> Result<HttpResponse, ApiError> {
    let name = params.parse_with("username", UserName::parse)?;
    let password = params.parse_with("password", Password::parse)?;
    let session = accounts.register(name, password).await?;
    Ok(ok(SessionReply::from(session)))
}

#[post("/douyin/user/login/")]
async fn login(params: Params, accounts: web::Data<Accounts>) -> Result<HttpResponse, ApiError> {
    let name = params.parse_with("username", UserName::parse)?;
    let password = params.parse_with("password", Password::parse)?;
    let session = accounts.login(name, password).await?;
    Ok(ok(SessionReply::from(session)))
}
