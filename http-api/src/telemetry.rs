//! The HTTP side of the logs: every request's root span, with its target masked (the client
//! sends its token and password in the query string, so no URL is ever logged as it came) and
//! its request id.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::Error;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

/// How long the services keep an idle client connection open. nginx keeps its idle upstream
/// connections for less (`keepalive_timeout` in deploy/nginx), so it is always nginx that
/// closes one: a request is never sent on a connection the service is closing.
pub const IDLE_CONNECTION_KEPT: std::time::Duration = std::time::Duration::from_secs(75);

/// Query parameters whose values are never logged: `token`, `password`, and any other whose
/// name contains either.
pub(crate) fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("token") || name.contains("password")
}

/// A request's path and query as logged: secret parameters' values replaced, the rest as sent.
pub fn masked_target(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let raw_name = pair.split_once('=').map_or(pair, |(name, _)| name);
            // Names are compared decoded: `pass%77ord` is `password` to the server too.
            let name = form_urlencoded::parse(raw_name.as_bytes())
                .next()
                .map(|(name, _)| name.into_owned())
                .unwrap_or_default();
            if is_secret(&name) {
                format!("{raw_name}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// The root span of every request, as tracing-actix-web's default but with the target masked
/// ([`masked_target`]) and the client address as the proxy saw it.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let target = request
            .uri()
            .path_and_query()
            .map(|target| masked_target(target.as_str()))
            .unwrap_or_default();
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|id| is_request_id(id))
            .unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %target,
            http.client_ip = %crate::client::address(request.request()),
            http.status_code = tracing::field::Empty,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// A request id as nginx makes them, or a client's own if it is as harmless: at most 64
/// characters of `[A-Za-z0-9-]`, so it cannot forge log lines.
fn is_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_passwords_are_masked_in_targets() {
        assert_eq!(
            masked_target("/douyin/user/login/?username=ann&password=hunter2"),
            "/douyin/user/login/?username=ann&password=[redacted]"
        );
        assert_eq!(
            masked_target("/douyin/feed/?latest_time=1&token=eyJ0eXAi.x.y"),
            "/douyin/feed/?latest_time=1&token=[redacted]"
        );
        // Encoded names and odd shapes are masked too.
        assert_eq!(
            masked_target("/x?pass%77ord=a&TOKEN=b&token&=c"),
            "/x?pass%77ord=[redacted]&TOKEN=[redacted]&token=[redacted]&=c"
        );
        assert_eq!(masked_target("/douyin/feed/"), "/douyin/feed/");
    }

    #[test]
    fn only_harmless_request_ids_are_kept() {
        assert!(is_request_id("4f1c2a9e-77b0-4c2e-9d1e-0a1b2c3d4e5f"));
        assert!(!is_request_id(""));
        assert!(!is_request_id("a b"));
        assert!(!is_request_id("id\nforged log line"));
        assert!(!is_request_id(&"a".repeat(65)));
    }
}
