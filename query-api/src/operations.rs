//! `/metrics` and `/readyz` of the query API, on its own address (nginx answers 404 for both):
//! whether the two read stores answer, since every read needs one or the other.

use actix_web::{web, HttpResponse};
use http_api::ops::{metrics_answer, readiness_answer};
use infra::metrics::{Dependency, Readiness};
use infra::settings::RedisSettings;
use metrics_exporter_prometheus::PrometheusHandle;

/// What the two routes need: the process's metrics, and connections of their own to the read
/// stores, apart from the requests' (see [`infra::read_store::connect_for_operations`]).
pub struct Operations {
    pub metrics: PrometheusHandle,
    pub read_store: deadpool_postgres::Pool,
    pub redis: RedisSettings,
}

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/metrics", web::get().to(metrics))
        .route("/readyz", web::get().to(readyz));
}

async fn metrics(operations: web::Data<Operations>) -> HttpResponse {
    metrics_answer(&operations.metrics)
}

async fn readyz(operations: web::Data<Operations>) -> HttpResponse {
    let readiness = Readiness::of(vec![
        (
            Dependency::Postgres,
            infra::metrics::postgres_pool(&operations.read_store),
        ),
        (
            Dependency::Redis,
            infra::metrics::redis_at(&operations.redis),
        ),
    ])
    .await;
    readiness_answer(&readiness)
}
