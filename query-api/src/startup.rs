use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};
use http_api::auth::Tokens;
use http_api::http::{done, route_not_found};
use http_api::telemetry::{RequestSpan, IDLE_CONNECTION_KEPT};
use infra::redis_store::{self, Keys};
use tracing_actix_web::TracingLogger;

use crate::operations::{self, Operations};
use crate::reads::Reads;
use crate::routes;
use crate::settings::Settings;
use http_api::cards::Cards;
use http_api::media::MediaStore;

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        infra::hardening::keep_secrets_from_other_processes();
        let read_store = infra::read_store::connect(&settings.read_store).await?;
        // A reply kept in memory could be served after the write that changed it was
        // answered (redis-rs may keep a reply read just before its key's invalidation, and
        // the generation pointer changes under it at a rebuild's switch): with read after
        // write on, every read goes to Redis.
        let redis = if settings.read_after_write.read_after_write {
            redis_store::connect(&settings.redis).await?
        } else {
            redis_store::connect_cached(&settings.redis).await?
        };
        let tokens = web::Data::new(Tokens::new(&settings.auth)?);
        let keys = Keys::new(&settings.redis);
        let cards = Cards::new(redis, keys, settings.public.clone());
        let reads = web::Data::new(Reads::new(read_store, cards));
        let media = web::Data::new(MediaStore::connect(&settings.media)?);
        let proxies = web::Data::new(settings.proxies.clone());
        let operations = web::Data::new(Operations {
            metrics: infra::metrics::install(),
            read_store: infra::read_store::connect_for_operations(&settings.read_store).await?,
            redis: settings.redis.clone(),
        });

        let listener = TcpListener::bind(settings.listen)?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(http_api::ops::record_request))
                .wrap(NormalizePath::new(TrailingSlash::MergeOnly))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(operations.clone())
                .app_data(tokens.clone())
                .app_data(reads.clone())
                .app_data(media.clone())
                .app_data(proxies.clone())
                .configure(routes::configure)
                .configure(operations::configure)
                .route("/healthz", web::get().to(|| async { done() }))
                .default_service(web::to(route_not_found))
        })
        // Longer than nginx keeps an idle upstream connection (see IDLE_CONNECTION_KEPT).
        .keep_alive(IDLE_CONNECTION_KEPT)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        Ok(self.server.await?)
    }
}
