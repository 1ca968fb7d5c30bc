//! `/metrics` and `/readyz` of the command API, on its own address (nginx answers 404 for
//! both): its metrics with the outbox's backlog read at each scrape, and whether its event
//! store answers, the one dependency it cannot accept a write without.

use actix_web::{web, HttpResponse};
use http_api::ops::{metrics_answer, readiness_answer};
use infra::metrics::{Dependency, Readiness};
use infra::outbox::Backlog;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

/// What the two routes need: the process's metrics, and a connection of their own to the
/// event store ([`infra::event_store::EventStore::operations_pool`]).
pub struct Operations {
    pub metrics: PrometheusHandle,
    pub event_store: PgPool,
}

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/metrics", web::get().to(metrics))
        .route("/readyz", web::get().to(readyz));
}

async fn metrics(operations: web::Data<Operations>) -> HttpResponse {
    match tokio::time::timeout(
        infra::metrics::CHECK_TIMEOUT,
        Backlog::read(&operations.event_store),
    )
    .await
    {
        Ok(Ok(backlog)) => backlog.record(),
        // The other series still tell an operator something: the backlog keeps its last
        // value, and the failure shows in /readyz.
        Ok(Err(error)) => tracing::warn!(%error, "could not read the outbox's backlog"),
        Err(_) => tracing::warn!("the outbox's backlog took too long to read"),
    }
    metrics_answer(&operations.metrics)
}

async fn readyz(operations: web::Data<Operations>) -> HttpResponse {
    let readiness = Readiness::of(vec![(
        Dependency::Postgres,
        infra::metrics::postgres_sqlx(&operations.event_store),
    )])
    .await;
    readiness_answer(&readiness)
}
