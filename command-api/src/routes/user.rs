use std::net::IpAddr;

use actix_web::{post, web, HttpRequest, HttpResponse};
use domain::account::{Password, PasswordError};
use domain::user::{UserName, UserNameError};
use http_api::auth::Standing;
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

/// How a sign-up and a login read their name and password: a new account meets today's rules,
/// a login takes any name and password an account could ever have been made with.
struct Rules {
    limit: Limit,
    name: fn(&str) -> Result<UserName, UserNameError>,
    password: fn(&str) -> Result<Password, PasswordError>,
}

const SIGN_UP: Rules = Rules {
    limit: Limit::Register,
    name: UserName::parse,
    password: Password::parse_new,
};

const LOGIN: Rules = Rules {
    limit: Limit::Login,
    name: UserName::typed,
    password: Password::parse,
};

impl Credentials {
    /// Every try counts against its address under the rules' limit before anything else,
    /// refused ones included: no free probing.
    async fn read(
        req: &HttpRequest,
        params: &Params,
        limits: &RateLimits,
        rules: Rules,
    ) -> Result<Self, ApiError> {
        let address = client::address(req);
        limits.take(rules.limit, &Subject::address(address)).await?;
        Ok(Self {
            address,
            name: params.parse_with("username", rules.name)?,
            password: params.parse_with("password", rules.password)?,
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
    let sign_up = Credentials::read(&req, &params, &limits, SIGN_UP).await?;
    let session = accounts.register(sign_up.name, sign_up.password).await?;
    Ok(ok(SessionReply::from(session)))
}

/// Logins count against their address; wrong passwords also against the name tried from that
/// address (an IPv6 /64), so guessing one account's password is slow while its owner,
/// elsewhere, still logs in; and against the name from every address it was never signed in
/// from, so that guesses spread over many addresses are slow too, while its owner, from an
/// address they signed in from before, is never held back by them.
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
    } = Credentials::read(&req, &params, &limits, LOGIN).await?;
    // Counted by the name in the form accounts are compared in: its spellings are one name.
    let compared = name.composed().unwrap_or_else(|| name.clone());
    let (from_here, account) = (
        Subject::name_from(&compared, address),
        Subject::name(&compared),
    );
    let known = limits.knows(&from_here).await;
    // Logins that failed lately, from here or at this account, do not get the password checks
    // kept for the others.
    let suspect = limits.counted(Limit::FailedLogin, &from_here).await
        || limits.counted(Limit::FailedLoginAccount, &account).await;
    let standing = if suspect {
        Standing::Suspect
    } else {
        Standing::Clear
    };
    // Counted as guesses before the password is checked, and given back unless it proves
    // wrong: simultaneous guesses cannot all slip through while the first are being checked.
    let mut guesses = vec![(Limit::FailedLogin, from_here.clone())];
    if !known {
        guesses.push((Limit::FailedLoginAccount, account));
    }
    let mut taken = Vec::with_capacity(guesses.len());
    for (limit, subject) in guesses {
        if let Err(refused) = limits.take(limit, &subject).await {
            give_back(&limits, taken).await;
            return Err(refused.into());
        }
        taken.push((limit, subject));
    }
    let login = accounts.login(name, password, standing).await;
    if !matches!(login, Err(AccountsError::WrongCredentials)) {
        give_back(&limits, taken).await;
    }
    if login.is_ok() {
        limits.remember(&from_here).await;
    }
    Ok(ok(SessionReply::from(login?)))
}

async fn give_back(limits: &RateLimits, taken: Vec<(Limit, Subject)>) {
    for (limit, subject) in taken {
        limits.give_back(limit, &subject).await;
    }
}
