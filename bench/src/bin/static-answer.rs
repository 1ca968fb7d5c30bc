//! Ceiling (a′) of `make bench`: the least an actix-web service behind nginx can do for a
//! read, answering every GET with the same bytes (a saved feed page) from memory, with the
//! services' runtime and allocator. What the query API does beyond this is its own cost.
//!
//!     static-answer ADDRESS FILE

use actix_web::{web, App, HttpResponse, HttpServer};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Answers every GET with the bytes of FILE: the ceiling of an actix-web read behind nginx.
#[derive(clap::Parser)]
struct Cli {
    /// Where to listen (host:port).
    address: String,
    /// What to answer with.
    file: std::path::PathBuf,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let Cli { address, file } = clap::Parser::parse();
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
