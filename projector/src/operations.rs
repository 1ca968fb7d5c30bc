//! The projector's `/metrics`, `/readyz` and `/healthz`, on `PROJECTOR_ADDR` (127.0.0.1:8083
//! by default), served by hyper alone: the projector serves no client, and has no use for a
//! web framework. The gauges that describe the read store (dead letters, aggregates held
//! back, a rebuild under way) are read from it at each scrape.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use infra::metrics::{
    Dependency, Readiness, CHECK_TIMEOUT, PROJECTOR_DEAD_LETTERS, PROJECTOR_HELD_BACK,
    REBUILD_IN_PROGRESS, REBUILD_READ_THROUGH, REBUILD_REPLAYED,
};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::consumer::BaseConsumer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::projections::RedisBehind;
use crate::settings::Settings;

/// How long a connection may take to send a request's headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Operations {
    metrics: PrometheusHandle,
    /// One connection of its own (see [`infra::read_store::connect_for_operations`]).
    read_store: deadpool_postgres::Pool,
    settings: Settings,
    broker: Arc<BaseConsumer>,
    redis_behind: RedisBehind,
}

impl Operations {
    pub async fn new(settings: &Settings, redis_behind: RedisBehind) -> anyhow::Result<Self> {
        Ok(Self {
            redis_behind,
            metrics: infra::metrics::install(),
            read_store: infra::read_store::connect_for_operations(&settings.read_store).await?,
            broker: Arc::new(infra::kafka::client_config(&settings.kafka).create()?),
            settings: settings.clone(),
        })
    }

    /// Answers on `listener` until `stop`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors, say: the next accept may succeed.
                        tracing::warn!(%error, "could not accept an operator's connection");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.cancelled() => return,
            };
            let operations = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let operations = operations.clone();
                    async move { Ok::<_, Infallible>(operations.answer(request).await) }
                });
                // A client that opens a connection and sends nothing is let go after a
                // while rather than held for ever.
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "an operator's connection failed");
                }
            });
        }
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match request.uri().path() {
            "/metrics" => {
                self.sample().await;
                let mut answer = text(StatusCode::OK, self.metrics.render());
                answer.headers_mut().insert(
                    CONTENT_TYPE,
                    infra::metrics::PROMETHEUS_TEXT
                        .parse()
                        .expect("a valid header"),
                );
                answer
            }
            "/readyz" => {
                let readiness = self.readiness().await;
                let status = StatusCode::from_u16(readiness.http_status())
                    .expect("200 and 503 are statuses");
                let mut answer = text(
                    status,
                    serde_json::to_string(&readiness).expect("readiness is JSON"),
                );
                answer.headers_mut().insert(
                    CONTENT_TYPE,
                    "application/json".parse().expect("a valid header"),
                );
                answer
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            _ => text(StatusCode::NOT_FOUND, "no such route\n"),
        }
    }

    async fn readiness(&self) -> Readiness {
        Readiness::of(vec![
            (
                Dependency::Broker,
                infra::metrics::broker(self.broker.clone()),
            ),
            (
                Dependency::Postgres,
                infra::metrics::postgres_pool(&self.read_store),
            ),
            (Dependency::Redis, self.redis_check()),
        ])
        .await
    }

    /// Redis answers, and takes the projector's changes: one that answers but refuses writes
    /// (out of memory, say) leaves the Redis read models behind, and is not ready.
    fn redis_check(&self) -> infra::metrics::CheckFuture<'static> {
        let answers = infra::metrics::redis_at(&self.settings.redis);
        let behind = self.redis_behind.reason();
        Box::pin(async move {
            answers.await?;
            match behind {
                Some(reason) => Err(anyhow::anyhow!(
                    "behind the Postgres read models, caught up once it takes writes: {reason}"
                )),
                None => Ok(()),
            }
        })
    }

    /// Sets the gauges read from the read store; on failure they keep their last values (the
    /// failure shows in `/readyz`).
    async fn sample(&self) {
        let sampled = tokio::time::timeout(CHECK_TIMEOUT, async {
            let client = self.read_store.get().await?;
            let row = client
                .query_one(
                    // An aggregate is held back behind a dead letter (known by its topic
                    // and key) or a missing event (by its type and id): it cannot be both
                    // long, since a dead letter stops its aggregate before any gap.
                    "SELECT (SELECT count(*) FROM dead_letters),
                            (SELECT count(*) FROM (SELECT DISTINCT topic, key
                                                     FROM dead_letters) behind_dead_letters)
                          + (SELECT count(*) FROM (SELECT DISTINCT aggregate_type, aggregate_id
                                                     FROM waiting_events
                                                    WHERE released_at IS NULL) behind_gaps)",
                    &[],
                )
                .await?;
            let progress = crate::replay::progress(&client).await?;
            anyhow::Ok((row.get::<_, i64>(0), row.get::<_, i64>(1), progress))
        })
        .await;
        match sampled {
            Ok(Ok((dead_letters, held_back, progress))) => {
                metrics::gauge!(PROJECTOR_DEAD_LETTERS).set(dead_letters as f64);
                metrics::gauge!(PROJECTOR_HELD_BACK).set(held_back as f64);
                let (in_progress, replayed, read_through) = match progress {
                    Some(recorded) => (
                        1.0,
                        recorded.events as f64,
                        f64::from(u8::from(recorded.read_through)),
                    ),
                    None => (0.0, 0.0, 0.0),
                };
                metrics::gauge!(REBUILD_IN_PROGRESS).set(in_progress);
                metrics::gauge!(REBUILD_REPLAYED).set(replayed);
                metrics::gauge!(REBUILD_READ_THROUGH).set(read_through);
            }
            Ok(Err(error)) => tracing::warn!(%error, "could not read the projector's gauges"),
            Err(_) => tracing::warn!("the projector's gauges took too long to read"),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(body.into()));
    *answer.status_mut() = status;
    answer
}
