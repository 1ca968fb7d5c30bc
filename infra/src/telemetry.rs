//! Logs: human-readable by default, JSON lines with `LOG_FORMAT=json`; levels from `RUST_LOG`.
//! Traces, when asked for, and their context carried through the event store and the broker.
//!
//! The client sends its token and password in the query string, so no URL is ever logged as
//! it came: the HTTP services' request span (`http_api::telemetry`) records the target with those
//! parameters masked.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
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
/// one). The first call in a process wins: returns whether this one did.
pub fn init_with(provider: Option<SdkTracerProvider>) -> bool {
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
    if result.is_err() {
        return false;
    }
    if let Some(provider) = provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let _ = TRACES.set(provider);
    }
    log_panics();
    true
}

/// Whether this process exports traces.
pub fn traces_on() -> bool {
    TRACES.get().is_some()
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
    if !traces_on() {
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
