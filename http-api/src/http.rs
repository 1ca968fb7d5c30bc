//! The client's HTTP conventions, in one place: the `{status_code, status_msg}` envelope, the
//! mapping of every error to it, and parameters that may come from the query string or a form
//! body.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::{self, Display};
use std::pin::Pin;
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use domain::UserId;
use futures::future::LocalBoxFuture;
use futures::{Stream, StreamExt};
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
    #[error("the query string is longer than {MAX_QUERY_BYTES} bytes")]
    QueryTooLong,
    /// An upload that stalls, or trickles in, holding resources meant for others.
    #[error("{0}")]
    TooSlow(String),
    /// Too many tries from one client or user: try again after `retry_after`.
    #[error("too many requests, please try again in {} s", whole_seconds(*retry_after))]
    RateLimited { retry_after: Duration },
    /// Working at capacity (password checks, video covers): a refusal, not a fault, so the
    /// client shows its message; it may try again after `retry_after`.
    #[error("the service is busy, please try again in {} s", whole_seconds(*retry_after))]
    Busy { retry_after: Duration },
    /// A dependency (Postgres, Redis) failed or did not answer in time.
    #[error("the service is unavailable, please try again")]
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
            Self::QueryTooLong => 414,
            Self::TooSlow(_) => 408,
            Self::RateLimited { .. } => 429,
            Self::Internal(_) => 500,
            Self::Busy { .. } => 503,
            Self::Unavailable(_) => 503,
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Busy { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        Self::Unauthenticated(error.to_string())
    }
}

/// Seconds to wait, rounded up and at least one: a client retrying sooner would be refused
/// again.
fn whole_seconds(duration: Duration) -> u64 {
    (duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(1)
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
        let mut response = HttpResponse::build(self.status_code());
        if let Some(after) = self.retry_after() {
            response.insert_header((RETRY_AFTER, whole_seconds(after)));
        }
        envelope(response, self.code(), &self.to_string(), Nothing {})
    }
}

/// The envelope's `status_code` of an answer, kept beside it for the request metrics
/// (`crate::ops`): refusals are HTTP 200, so the HTTP status alone would hide them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeStatus(pub i32);

/// Every envelope goes out through here.
fn envelope(
    mut response: actix_web::HttpResponseBuilder,
    status_code: i32,
    status_msg: &str,
    body: impl Serialize,
) -> HttpResponse {
    response
        .extensions_mut()
        .insert(EnvelopeStatus(status_code));
    response.json(Envelope {
        status_code,
        status_msg,
        body,
    })
}

/// A success: `body`'s fields beside `status_code: 0`.
pub fn ok(body: impl Serialize) -> HttpResponse {
    envelope(HttpResponse::Ok(), 0, "success", body)
}

/// A success with no other field.
pub fn done() -> HttpResponse {
    ok(Nothing {})
}

/// For routes that do not exist: still the envelope, never an HTML page.
pub async fn route_not_found() -> HttpResponse {
    not_found("no such route")
}

/// For methods a resource does not take (media is GET and HEAD only): HTTP 405 with the
/// envelope, never an empty body.
pub async fn method_not_allowed() -> HttpResponse {
    envelope(
        HttpResponse::MethodNotAllowed(),
        405,
        "method not allowed",
        Nothing {},
    )
}

/// An HTTP 404 with the envelope: for what is fetched by URL (media), where players and
/// caches go by the HTTP status rather than by `status_code`.
pub fn not_found(message: &str) -> HttpResponse {
    envelope(HttpResponse::NotFound(), 404, message, Nothing {})
}

/// Parameters of a request, from its query string and from a form or multipart body.
/// The client sends some fields in both; the query string wins.
#[derive(Default)]
pub struct Params(HashMap<String, String>);

/// Names and values, but never a token's or a password's value.
impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| {
                let shown = if crate::telemetry::is_secret(name) {
                    "[redacted]"
                } else {
                    value.as_str()
                };
                (name, shown)
            }))
            .finish()
    }
}

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

/// The longest query string read: a 1,000-character message in Chinese is about 9 KiB once
/// percent-encoded. nginx lets request lines through up to twice this.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// The most a body of parameters may hold (every route but publish, which streams its file).
pub const MAX_PARAMS_BODY: usize = 64 * 1024;
/// The most fields a multipart body of parameters may have: the client sends at most five.
pub const MAX_PARAMS_FIELDS: usize = 16;

fn body_too_large() -> ApiError {
    ApiError::TooLarge(format!(
        "the request body is larger than {} KiB",
        MAX_PARAMS_BODY / 1024
    ))
}

/// The length the request declares, if any. A declared length over a cap is refused before a
/// byte of the body is read.
pub fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse().ok())
}

/// The request body, cut off with [`PayloadError::Overflow`] past `max` bytes, whatever it
/// declared: a chunked body has no length to check up front. `cut` is set when it was cut off:
/// the multipart parser reports a stream that ended in an error as merely incomplete.
fn capped(
    payload: Payload,
    max: usize,
    cut: Rc<Cell<bool>>,
) -> impl Stream<Item = Result<Bytes, PayloadError>> + 'static {
    payload.scan(0usize, move |received, chunk| {
        let item = chunk.and_then(|chunk| {
            *received += chunk.len();
            if *received > max {
                cut.set(true);
                Err(PayloadError::Overflow)
            } else {
                Ok(chunk)
            }
        });
        std::future::ready(Some(item))
    })
}

/// Text fields of a multipart body of parameters, in order. File parts count towards the
/// body's size but are not kept: the route that takes a file reads its body itself.
async fn multipart_text_fields(
    mut multipart: Multipart,
    cut: &Cell<bool>,
) -> Result<Vec<(String, String)>, ApiError> {
    let multipart_error = |error| {
        if cut.get() {
            body_too_large()
        } else {
            malformed_multipart(error)
        }
    };
    let mut fields = vec![];
    let mut count = 0;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(multipart_error)?;
        count += 1;
        if count > MAX_PARAMS_FIELDS {
            return Err(ApiError::InvalidParameter(format!(
                "a request has at most {MAX_PARAMS_FIELDS} fields"
            )));
        }
        let is_file = field
            .content_disposition()
            .is_some_and(|disposition| disposition.get_filename().is_some());
        let name = field.name().unwrap_or_default().to_owned();
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(multipart_error)?;
            if !is_file {
                value.extend_from_slice(&chunk);
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

/// Parameters of the query string alone, refused past [`MAX_QUERY_BYTES`].
pub fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    let query = req.query_string();
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::QueryTooLong);
    }
    pairs(query.as_bytes())
}

fn pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|error| ApiError::InvalidParameter(format!("malformed parameters: {error}")))
}

/// A form body, read up to [`MAX_PARAMS_BODY`].
async fn form_body(
    body: impl Stream<Item = Result<Bytes, PayloadError>>,
) -> Result<Vec<u8>, ApiError> {
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(PayloadError::Overflow) => return Err(body_too_large()),
            Err(error) => {
                return Err(ApiError::InvalidParameter(format!(
                    "unreadable form body: {error}"
                )))
            }
        }
    }
    Ok(bytes)
}

/// Where the body's parameters are, by its content type. Other bodies are not read.
enum Body {
    Form(Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>),
    Multipart(Multipart, Rc<Cell<bool>>),
    Unread,
}

impl FromRequest for Params {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    /// Every bound is checked before the body is read, and again as it arrives: a body over
    /// its cap costs at most the cap in memory, and a declared one nothing at all.
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let query = query_pairs(req);
        let kind = content_type(req);
        let declared_too_large =
            declared_length(req).is_some_and(|length| length > MAX_PARAMS_BODY as u64);
        let cut = Rc::new(Cell::new(false));
        let body = if kind.starts_with("application/x-www-form-urlencoded") {
            Body::Form(Box::pin(capped(payload.take(), MAX_PARAMS_BODY, cut)))
        } else if kind.starts_with("multipart/form-data") {
            let body = capped(payload.take(), MAX_PARAMS_BODY, cut.clone());
            Body::Multipart(Multipart::new(req.headers(), body), cut)
        } else {
            Body::Unread
        };
        Box::pin(async move {
            let mut all = query?;
            if declared_too_large {
                return Err(body_too_large());
            }
            match body {
                Body::Form(body) => all.extend(pairs(&form_body(body).await?)?),
                Body::Multipart(multipart, cut) => {
                    all.extend(multipart_text_fields(multipart, &cut).await?)
                }
                Body::Unread => {}
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

    fn multipart(fields: usize, value: &str) -> (String, Vec<u8>) {
        let mut body = String::new();
        for i in 0..fields {
            body.push_str(&format!(
                "--xyz\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str("--xyz--\r\n");
        (
            "multipart/form-data; boundary=xyz".to_owned(),
            body.into_bytes(),
        )
    }

    async fn extract(content_type: &str, body: Vec<u8>) -> Result<Params, ApiError> {
        let (req, mut payload) = actix_web::test::TestRequest::post()
            .insert_header((CONTENT_TYPE, content_type))
            .set_payload(body)
            .to_http_parts();
        Params::from_request(&req, &mut payload).await
    }

    #[actix_web::test]
    async fn multipart_bodies_are_bounded_in_fields_and_bytes() {
        let (kind, body) = multipart(16, "v");
        let params = extract(&kind, body).await.unwrap();
        assert_eq!(params.get("f15"), Some("v"));

        let (kind, body) = multipart(17, "v");
        let error = extract(&kind, body).await.unwrap_err();
        assert_eq!(error.code(), 400, "{error}");
        let b = "8d1b2d5e3c4f5a6b-7c8d9e0f1a2b3c4d-5e6f7a8b9c0d1e2f-3a4b5c6d7e8f9a0b";
        let mut body = String::new();
        for i in 0..17 {
            body.push_str(&format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"extra{i}\"\r\n\r\nx\r\n"
            ));
        }
        body.push_str(&format!("--{b}--\r\n"));
        let error = extract(
            &format!("multipart/form-data; boundary={b}"),
            body.into_bytes(),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code(), 400, "{error}");

        let (kind, body) = multipart(2, &"x".repeat(40 * 1024));
        let error = extract(&kind, body).await.unwrap_err();
        assert_eq!(error.code(), 413, "{error}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let params = Params::from_pairs([
            ("password".to_owned(), "hunter2".to_owned()),
            ("token".to_owned(), "eyJ.secret".to_owned()),
            ("username".to_owned(), "ann".to_owned()),
        ]);
        let printed = format!("{params:?}");
        assert!(printed.contains("ann"), "{printed}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("eyJ"),
            "{printed}"
        );
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
