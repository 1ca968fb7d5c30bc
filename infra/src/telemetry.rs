//! Logs: human-readable by default, JSON lines with `LOG_FORMAT=json`; levels from `RUST_LOG`.
//!
//! The client sends its token and password in the query string, so no URL is ever logged as
//! it came: [`RequestSpan`] records the target with those parameters masked, and [`Params`]
//! prints no secret either.
//!
//! [`Params`]: crate::http::Params

use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::Error;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The exporter of this process's traces, when there is one: flushed by [`shutdown`].
static TRACES: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Logs, and traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (OTLP over HTTP, protobuf; the
/// standard `OTEL_*` variables apply, `OTEL_SERVICE_NAME` names the service, by default the
/// binary's name). Without that variable nothing is exported and no trace context is written
/// anywhere.
pub fn init() {
    let provider = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(_) => match otlp_provider() {
            Ok(provider) => Some(provider),
            Err(error) => {
                // Logs are not set up yet: say it where an operator looks first.
                eprintln!("traces are off: the OTLP exporter could not be made: {error}");
                None
            }
        },
        None => None,
    };
    init_with(provider);
}

/// As [`init`], exporting traces to `provider` if one is given (a test gives an in-memory
/// one). The first call in a process wins.
pub fn init_with(provider: Option<SdkTracerProvider>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("douyin")));
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init();
    // A second call (several apps in one test process) keeps the first subscriber.
    if result.is_ok() {
        if let Some(provider) = provider {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let _ = TRACES.set(provider);
        }
        log_panics();
    }
}

/// Sends the traces not exported yet; call before the process exits.
pub fn shutdown() {
    if let Some(provider) = TRACES.get() {
        if let Err(error) = provider.shutdown() {
            tracing::warn!(%error, "could not flush the last traces");
        }
    }
}

fn otlp_provider() -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| {
        std::env::args()
            .next()
            .and_then(|path| {
                std::path::Path::new(&path)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "douyin".to_owned())
    });
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}

/// The W3C trace context (`traceparent`, and `tracestate` if any) of the current span: stored
/// with the events a command records, so that the relay and the projector continue the write's
/// trace. Empty when traces are off.
pub fn current_trace_context() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
    }
    carrier
}

/// Makes `span` a child of the trace context in `carrier` (an event's metadata, a message's
/// headers); a carrier without a valid one leaves `span` a root.
pub fn continue_trace(span: &Span, carrier: &HashMap<String, String>) {
    if TRACES.get().is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Panics go to the log as errors, inside the span of the request that panicked (so with its
/// masked target, never the raw URL), then to the usual hook (stderr, backtraces).
fn log_panics() {
    let usual = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        let location = panic.location().map(ToString::to_string);
        let message = panic
            .payload()
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(location, message, "panic");
        usual(panic);
    }));
}

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
