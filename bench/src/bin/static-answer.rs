//! Ceiling (a′) of `make bench`: the least an actix-web service behind nginx can do for a
//! read, answering every GET with the same bytes (a saved feed page) from memory, with the
//! services' runtime and allocator. What the query API does beyond this is its own cost.
//!
//!     static-answer ADDRESS FILE

use actix_web::{web, App, HttpResponse, HttpServer};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(file)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: static-answer ADDRESS FILE");
    };
    let body = web::Bytes::from(std::fs::read(&file)?);
    HttpServer::new(move || {
        let body = body.clone();
        App::new().default_service(web::to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body)
            }
        }))
    })
    .keep_alive(std::time::Duration::from_secs(75))
    .bind(address)?
    .run()
    .await?;
    Ok(())
}
