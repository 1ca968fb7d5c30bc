//! The client's HTTP conventions, in one place: the `{status_code, status_msg}` envelope, the
//! mapping of every error to it, and parameters that may come from the query string or a form
//! body.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use actix_multipart::Multipart;
use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use domain::UserId;
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::Serialize;

use crate::auth::{TokenError, Tokens};

/// Why a request was not carried out. Refusals answer HTTP 200 with a non-zero
/// `status_code`, since the client reads `status_msg` from 200 bodies only; faults of ours
/// answer 5xx, still with the envelope. The codes follow HTTP's meanings (docs/api.md).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("the service is busy, please try again")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error, please try again later")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> i32 {
        match self {
            Self::InvalidParameter(_) => 400,
            Self::Unauthenticated(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::TooLarge(_) => 413,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        Self::Unauthenticated(error.to_string())
    }
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    status_code: i32,
    status_msg: &'a str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct Nothing {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) | Self::Unavailable(cause) => {
                tracing::error!(error = ?cause, "request failed")
            }
            _ => tracing::debug!(reason = %self, "request refused"),
        }
        HttpResponse::build(self.status_code()).json(Envelope {
            status_code: self.code(),
            status_msg: &self.to_string(),
            body: Nothing {},
        })
    }
}

/// A success: `body`'s fields beside `status_code: 0`.
pub fn ok(body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok().json(Envelope {
        status_code: 0,
        status_msg: "success",
        body,
    })
}

/// A success with no other field.
pub fn done() -> HttpResponse {
    ok(Nothing {})
}

/// For routes that do not exist: still the envelope, never an HTML page.
pub async fn route_not_found() -> HttpResponse {
    not_found("no such route")
}

/// An HTTP 404 with the envelope: for what is fetched by URL (media), where players and
/// caches go by the HTTP status rather than by `status_code`.
pub fn not_found(message: &str) -> HttpResponse {
    HttpResponse::NotFound().json(Envelope {
        status_code: 404,
        status_msg: message,
        body: Nothing {},
    })
}

/// Parameters of a request, from its query string and from a form or multipart body.
/// The client sends some fields in both; the query string wins.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut params = HashMap::new();
        for (name, value) in pairs {
            params.entry(name).or_insert(value);
        }
        Self(params)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::InvalidParameter(format!("`{name}` is required")))
    }

    /// Parses a required parameter with `parse`, naming the parameter in the refusal.
    pub fn parse_with<T, E: Display>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ApiError> {
        parse(self.required(name)?)
            .map_err(|error| ApiError::InvalidParameter(format!("`{name}` {error}")))
    }

    pub fn parse<T>(&self, name: &str) -> Result<T, ApiError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.parse_with(name, str::parse)
    }

    /// The user the `token` parameter was issued to, for routes that personalise what they
    /// show but work without a login. An expired or bad token reads as no login: the feed
    /// must keep working for a client holding an old token.
    pub fn viewer(&self, tokens: &Tokens) -> Option<UserId> {
        let token = self.get("token").filter(|token| !token.is_empty())?;
        tokens
            .verify(token)
            .inspect_err(|error| tracing::debug!(%error, "token ignored"))
            .ok()
    }

    /// Parses an optional parameter; an empty value counts as missing.
    pub fn parse_optional<T>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(name).filter(|value| !value.is_empty()) {
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|error| ApiError::InvalidParameter(format!("`{name}` {error}"))),
            None => Ok(None),
        }
    }

    /// The user the required `token` parameter was issued to.
    pub fn authenticated_user(&self, tokens: &Tokens) -> Result<UserId, ApiError> {
        let token = self
            .get("token")
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::Unauthenticated("`token` is required: log in first".into()))?;
        Ok(tokens.verify(token)?)
    }
}

fn content_type(req: &HttpRequest) -> &str {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// The most a text field of a multipart body may hold.
const MAX_TEXT_FIELD: usize = 64 * 1024;

/// Text fields of a multipart body, in order. File parts are read past, not kept: routes
/// that take a file read the body themselves.
pub async fn multipart_text_fields(
    mut multipart: Multipart,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut fields = vec![];
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(malformed_multipart)?;
        let is_file = field
            .content_disposition()
            .is_some_and(|disposition| disposition.get_filename().is_some());
        let name = field.name().unwrap_or_default().to_owned();
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(malformed_multipart)?;
            if !is_file {
                value.extend_from_slice(&chunk);
                if value.len() > MAX_TEXT_FIELD {
                    return Err(ApiError::InvalidParameter(format!(
                        "`{name}` is longer than {MAX_TEXT_FIELD} bytes"
                    )));
                }
            }
        }
        if !is_file {
            let value = String::from_utf8(value)
                .map_err(|_| ApiError::InvalidParameter(format!("`{name}` is not UTF-8 text")))?;
            fields.push((name, value));
        }
    }
    Ok(fields)
}

pub fn malformed_multipart(error: actix_multipart::MultipartError) -> ApiError {
    ApiError::InvalidParameter(format!("malformed multipart body: {error}"))
}

/// Parameters of the query string alone.
pub fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    pairs(req.query_string().as_bytes())
}

fn pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|error| ApiError::InvalidParameter(format!("malformed parameters: {error}")))
}

impl FromRequest for Params {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let query = query_pairs(req);
        let kind = content_type(req);
        let form = kind
            .starts_with("application/x-www-form-urlencoded")
            .then(|| Bytes::from_request(req, payload));
        let multipart = kind
            .starts_with("multipart/form-data")
            .then(|| Multipart::new(req.headers(), payload.take()));
        Box::pin(async move {
            let mut all = query?;
            if let Some(body) = form {
                let body = body.await.map_err(|error| {
                    ApiError::InvalidParameter(format!("unreadable form body: {error}"))
                })?;
                all.extend(pairs(&body)?);
            }
            if let Some(multipart) = multipart {
                all.extend(multipart_text_fields(multipart).await?);
            }
            Ok(Self::from_pairs(all))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_of_a_parameter_wins() {
        let params = Params::from_pairs([
            ("username".to_owned(), "from-query".to_owned()),
            ("username".to_owned(), "from-body".to_owned()),
        ]);
        assert_eq!(params.get("username"), Some("from-query"));
    }

    #[test]
    fn refusals_name_the_parameter() {
        let params = Params::from_pairs([("user_id".to_owned(), "abc".to_owned())]);
        let error = params.parse::<UserId>("user_id").unwrap_err();
        assert_eq!(error.to_string(), "`user_id` must be an integer");
        assert_eq!(error.code(), 400);
        let missing = params.required("token").unwrap_err();
        assert_eq!(missing.to_string(), "`token` is required");
    }
}
