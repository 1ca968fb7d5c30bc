use std::net::IpAddr;

use actix_web::{post, web, HttpRequest, HttpResponse};
use domain::account::Password;
use domain::user::UserName;
use http_api::client;
use http_api::http::{ok, ApiError, Params};
use http_api::rate_limit::{Limit, RateLimits, Subject};
use serde::Serialize;

use crate::accounts::{Accounts, AccountsError, Session};

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

/// A sign-up or login: who sent it, and the name and password it carries.
struct Credentials {
    address: IpAddr,
    name: UserName,
    password: Password,
}

impl Credentials {
    /// Every try counts against its address under `limit` before anything else, refused ones
    /// included: no free probing.
    async fn read(
        req: &HttpRequest,
        params: &Params,
        limits: &RateLimits,
        limit: Limit,
    ) -> Result<Self, ApiError> {
        let address = client::address(req);
        limits.take(limit, &Subject::address(address)).await?;
        Ok(Self {
            address,
            name: params.parse_with("username", UserName::parse)?,
            password: params.parse_with("password", Password::parse)?,
        })
    }
}

#[post("/douyin/user/register/")]
async fn register(
    req: HttpRequest,
    params: Params,
    accounts: web::Data<Accounts>,
    limits: web::Data<RateLimits>,
) -> Result<HttpResponse, ApiError> {
    let sign_up = Credentials::read(&req, &params, &limits, Limit::Register).await?;
    let session = accounts.register(sign_up.name, sign_up.password).await?;
    Ok(ok(SessionReply::from(session)))
}

/// Logins count against their address; wrong passwords also against the name tried from that
/// address (an IPv6 /64), so guessing one account's password is slow while its owner,
/// elsewhere, still logs in.
#[post("/douyin/user/login/")]
async fn login(
    req: HttpRequest,
    params: Params,
    accounts: web::Data<Accounts>,
    limits: web::Data<RateLimits>,
) -> Result<HttpResponse, ApiError> {
    let Credentials {
        address,
        name,
        password,
    } = Credentials::read(&req, &params, &limits, Limit::Login).await?;
    // Counted as a guess before the password is checked, and given back unless it proves
    // wrong: simultaneous guesses cannot all slip through while the first are being checked.
    let guesses = Subject::name_from(&name, address);
    limits.take(Limit::FailedLogin, &guesses).await?;
    let login = accounts.login(name, password).await;
    if !matches!(login, Err(AccountsError::WrongCredentials)) {
        limits.give_back(Limit::FailedLogin, &guesses).await;
    }
    Ok(ok(SessionReply::from(login?)))
}
