//! Every write is answered once it is readable ([`crate::readable`]): the request's commands
//! are noted as they commit, and its success is held back until they are applied.

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use serde_json::Value;

use crate::readable::{Answer, Readable, SAVED};

/// Runs the request noting what it writes; a success waits for its writes to be readable,
/// and says "saved, it will show shortly" when they were not within the bound. Refusals and
/// failures are answered at once.
pub async fn once_readable(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let readable = req
        .app_data::<web::Data<Readable>>()
        .map(|readable| readable.get_ref().clone())
        .unwrap_or_else(Readable::off);
    let (response, written) = infra::written::noting(next.call(req)).await;
    let response = response?.map_into_boxed_body();
    if written.is_empty() || response.response().error().is_some() {
        return Ok(response);
    }
    match readable.wait(written).await {
        Answer::Readable => Ok(response),
        Answer::Saved => saying_saved(response).await,
    }
}

/// `response` with the `status_msg` of a write not readable yet.
async fn saying_saved(
    response: ServiceResponse<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (request, response) = response.into_parts();
    let (response, body) = response.into_parts();
    // The body is the envelope, made in memory: reading it back does not fail. If it did,
    // the write is committed all the same, and answered as a success.
    let bytes = to_bytes(body).await.unwrap_or_default();
    let body = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut envelope) if envelope["status_code"] == 0 => {
            envelope["status_msg"] = Value::from(SAVED);
            BoxBody::new(envelope.to_string())
        }
        Ok(_) => BoxBody::new(bytes),
        Err(_) => {
            BoxBody::new(serde_json::json!({ "status_code": 0, "status_msg": SAVED }).to_string())
        }
    };
    Ok(ServiceResponse::new(request, response.set_body(body)))
}
