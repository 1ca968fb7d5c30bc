use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};
use http_api::auth::{PasswordChecks, Tokens};
use http_api::http::{done, route_not_found};
use infra::event_store::EventStore;
use infra::outbox::Relay;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;

use crate::accounts::Accounts;
use crate::comments::Comments;
use crate::follows::Follows;
use crate::likes::Likes;
use crate::messages::Messages;
use crate::operations::{self, Operations};
use crate::readable::{Listening, Readable};
use crate::routes;
use crate::settings::Settings;
use crate::upload::UploadSlots;
use crate::videos::Videos;
use crate::writes::Facts;
use http_api::cards::Cards;
use http_api::media::MediaStore;
use http_api::rate_limit::RateLimits;
use http_api::telemetry::{RequestSpan, IDLE_CONNECTION_KEPT};
use infra::redis_store::{self, Keys};

pub struct Application {
    port: u16,
    server: Server,
    relay: Option<(JoinHandle<()>, CancellationToken)>,
    doorbell: (JoinHandle<()>, CancellationToken),
    listening: Option<Listening>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = EventStore::connect(&settings.event_store).await?;
        let tokens = Tokens::new(&settings.auth)?;
        let doorbell = {
            let stop = CancellationToken::new();
            let bell = store.doorbell().clone();
            let task = bell.tell_other_relays(store.connect_options().clone(), stop.clone());
            (tokio::spawn(task), stop)
        };
        let relay = if settings.relay.outbox_relay {
            let stop = CancellationToken::new();
            let lease = settings.relay.lock_lease();
            let relay = Relay::new(
                store.relay_pool(lease),
                store.doorbell().clone(),
                &settings.kafka,
                lease,
            )?;
            Some((tokio::spawn(relay.run(stop.clone())), stop))
        } else {
            None
        };

        let listener = TcpListener::bind(settings.listen)?;
        let port = listener.local_addr()?.port();
        let redis = redis_store::connect(&settings.redis).await?;
        let (readable, listening) = Readable::start(
            &settings.read_after_write,
            &settings.read_store.read_database_url,
            &settings.event_store.database_url,
            store.clone(),
            (redis.clone(), Keys::new(&settings.redis)),
        )?;
        let readable = web::Data::new(readable);
        settings.rate_limits.apart_from(&settings.redis)?;
        let limits = web::Data::new(RateLimits::new(redis.clone(), settings.rate_limits.clone()));
        let proxies = web::Data::new(settings.proxies.clone());
        let cards = web::Data::new(Cards::new(
            redis,
            Keys::new(&settings.redis),
            settings.public.clone(),
        ));
        let media = MediaStore::connect(&settings.media)?;
        infra::hardening::keep_secrets_from_other_processes();
        let sandbox = crate::sandbox::Sandbox::probe().await;
        let videos = web::Data::new(Videos::new(store.clone(), media, &settings.media, sandbox));
        let facts = Facts::new(store.clone());
        let likes = web::Data::new(Likes::new(&store, facts.clone()));
        let comments = web::Data::new(Comments::new(&store, facts.clone()));
        let follows = web::Data::new(Follows::new(&store, facts.clone()));
        let messages = web::Data::new(Messages::new(&store, facts));
        let tokens = web::Data::new(tokens);
        let media_settings = web::Data::new(settings.media.clone());
        let uploads = web::Data::new(UploadSlots::new(settings.media.uploads_at_once));
        let operations = web::Data::new(Operations {
            metrics: infra::metrics::install(),
            event_store: store.operations_pool(),
        });
        let accounts = web::Data::new(Accounts::new(
            store,
            tokens.as_ref().clone(),
            PasswordChecks::new(&settings.passwords)?,
        ));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(routes::answer::once_readable))
                .wrap(from_fn(http_api::ops::record_request))
                .wrap(NormalizePath::new(TrailingSlash::MergeOnly))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(operations.clone())
                .app_data(readable.clone())
                .app_data(accounts.clone())
                .app_data(limits.clone())
                .app_data(proxies.clone())
                .app_data(tokens.clone())
                .app_data(cards.clone())
                .app_data(media_settings.clone())
                .app_data(uploads.clone())
                .app_data(videos.clone())
                .app_data(likes.clone())
                .app_data(comments.clone())
                .app_data(follows.clone())
                .app_data(messages.clone())
                .configure(routes::configure)
                .configure(operations::configure)
                .route("/healthz", web::get().to(|| async { done() }))
                .default_service(web::to(route_not_found))
        })
        // Longer than nginx keeps an idle upstream connection, so nginx never sends a request
        // on a connection this side is closing (nginx does not retry a POST that fails so).
        .keep_alive(IDLE_CONNECTION_KEPT)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            relay,
            doorbell,
            listening,
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
        let (doorbell, stop) = self.doorbell;
        stop.cancel();
        doorbell.await?;
        if let Some(listening) = self.listening {
            listening.stop().await;
        }
        Ok(())
    }
}
