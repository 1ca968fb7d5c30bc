//! The OpenAPI description of the client API, docs/openapi.json, served as it is: built into
//! the binary, so that it always describes the build that serves it.

use actix_web::http::header::ContentType;
use actix_web::{get, HttpResponse};

const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

#[get("/openapi.json")]
async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(DOCUMENT)
}
