//! The operators' side of the two HTTP services (actix-web): request metrics, and the answers
//! of `/metrics` and `/readyz`. The projector serves the same two without actix-web.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::ContentType;
use actix_web::middleware::Next;
use actix_web::HttpResponse;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::http::EnvelopeStatus;
use infra::metrics::{Readiness, HTTP_REQUESTS, HTTP_REQUEST_DURATION, PROMETHEUS_TEXT};

/// Counts every answer by route pattern and envelope `status_code`, and times it. Requests
/// matching no route count under `default`: a label per raw path would let any client grow
/// the metrics without bound.
pub async fn record_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "default".to_owned());
    let answer = next.call(request).await;
    let http_status = match &answer {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    let status_code = answer
        .as_ref()
        .ok()
        .and_then(|response| {
            response
                .response()
                .extensions()
                .get::<EnvelopeStatus>()
                .copied()
        })
        .map_or_else(
            || "none".to_owned(),
            |EnvelopeStatus(code)| code.to_string(),
        );
    metrics::counter!(
        HTTP_REQUESTS,
        "method" => method,
        "route" => route.clone(),
        "http_status" => http_status.as_u16().to_string(),
        "status_code" => status_code,
    )
    .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    answer
}

/// A request's method as a label: one of the standard methods, else `other`. A client may
/// send any token as its method (nginx passes them on), and a label per token would be a
/// series per token, kept for ever.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// `/metrics`: the process's metrics in Prometheus's text format.
pub fn metrics_answer(handle: &PrometheusHandle) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(PROMETHEUS_TEXT)
        .body(handle.render())
}

/// `/readyz`: 200 when every dependency answered, else 503 naming those that did not.
pub fn readiness_answer(readiness: &Readiness) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(readiness.http_status())
        .expect("200 and 503 are statuses");
    HttpResponse::build(status)
        .content_type(ContentType::json())
        .json(readiness)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::Method;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        for made_up in ["AAAB", "AAAC", "BREW"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other");
        }
    }
}
