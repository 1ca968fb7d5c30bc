use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};
use infra::auth::Tokens;
use infra::event_store::EventStore;
use infra::http::{done, route_not_found};
use infra::outbox::Relay;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;

use crate::accounts::Accounts;
use crate::routes;
use crate::settings::Settings;

pub struct Application {
    port: u16,
    server: Server,
    relay: Option<(JoinHandle<()>, CancellationToken)>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = EventStore::connect(&settings.event_store).await?;
        let tokens = Tokens::new(&settings.auth)?;
        let relay = if settings.relay.outbox_relay {
            let stop = CancellationToken::new();
            let relay = Relay::new(store.pool().clone(), &settings.kafka)?;
            Some((tokio::spawn(relay.run(stop.clone())), stop))
        } else {
            None
        };

        let listener = TcpListener::bind(settings.listen)?;
        let port = listener.local_addr()?.port();
        let accounts = web::Data::new(Accounts::new(store, tokens));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(NormalizePath::new(TrailingSlash::MergeOnly))
                .wrap(TracingLogger::default())
                .app_data(accounts.clone())
                .configure(routes::configure)
                .route("/healthz", web::get().to(|| async { done() }))
                .default_service(web::to(route_not_found))
        })
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            relay,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then lets the relay finish the batch it is publishing.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        if let Some((relay, stop)) = self.relay {
            stop.cancel();
            relay.await?;
        }
        Ok(())
    }
}
