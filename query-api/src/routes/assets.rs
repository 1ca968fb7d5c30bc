//! The default avatar and profile background, so that a new user's URLs show an image.

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::{get, HttpResponse};

fn png(bytes: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::png())
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(86_400),
        ]))
        .body(bytes)
}

#[get("/static/avatar.png")]
async fn avatar() -> HttpResponse {
    png(include_bytes!("../../assets/avatar.png"))
}

#[get("/static/background.png")]
async fn background() -> HttpResponse {
    png(include_bytes!("../../assets/background.png"))
}

/// The cover of a video no cover could be taken from.
#[get("/static/cover.jpg")]
async fn cover() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::jpeg())
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(86_400),
        ]))
        .body(&include_bytes!("../../assets/cover.jpg")[..])
}
