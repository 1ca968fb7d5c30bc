//! What operators see of a running service: Prometheus metrics and readiness.
//!
//! Every service records through the `metrics` facade into one Prometheus recorder per process
//! and serves its text at `/metrics`, beside `/readyz`, on the service's own address (never
//! through nginx, which answers 404 for both). The names are here, in one place, so that
//! dashboards and docs/operations.md have one list to follow.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

/// The content type of Prometheus's text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Requests answered, by `method`, `route` (the route's pattern, never the raw path: a path
/// carries ids), `http_status` and the envelope's `status_code` (refusals are HTTP 200 with a
/// non-zero code; `none` for answers without the envelope, such as media).
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Seconds from a request's arrival to its answer, by `method` and `route`.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Tries refused by a rate limit, by `limit`.
pub const RATE_LIMIT_REFUSALS: &str = "rate_limit_refusals_total";

/// Events committed and not yet acknowledged by the broker, parked ones aside (read at each
/// scrape).
pub const OUTBOX_BACKLOG: &str = "outbox_backlog_events";
/// Seconds since the oldest of them was recorded; 0 when none waits.
pub const OUTBOX_OLDEST_AGE: &str = "outbox_oldest_event_age_seconds";
/// Events parked in the outbox as unpublishable, waiting for an operator.
pub const OUTBOX_PARKED: &str = "outbox_parked_events";
/// Events the relay published (the broker acknowledged them).
pub const RELAY_PUBLISHED: &str = "relay_published_events_total";
/// Relay attempts that failed (the broker or the event store away), each retried.
pub const RELAY_ERRORS: &str = "relay_errors_total";
/// Events parked because no consumer could read them (docs/architecture.md).
pub const RELAY_PARKED: &str = "relay_parked_events_total";

/// Messages of one partition the projectors' group has not applied yet, by `topic` and
/// `partition` (librdkafka's statistics, every few seconds).
pub const CONSUMER_LAG: &str = "projector_consumer_lag_messages";
/// Events in each batch the projector applied.
pub const PROJECTOR_BATCH_SIZE: &str = "projector_batch_events";
/// Seconds a batch took to apply to both read stores, retries included.
pub const PROJECTOR_APPLY_DURATION: &str = "projector_apply_duration_seconds";
/// Events applied, by `outcome` (applied, repeat, dead_lettered, waiting).
pub const PROJECTOR_EVENTS: &str = "projector_events_total";
/// Dead-lettered events waiting for `projector redrive` (read at each scrape).
pub const PROJECTOR_DEAD_LETTERS: &str = "projector_dead_letters";
/// Aggregates held back: behind a dead letter or a missing event (read at each scrape).
pub const PROJECTOR_HELD_BACK: &str = "projector_held_back_aggregates";
/// 1 while the projector leaves Redis behind the Postgres read models (Redis does not answer,
/// or refuses writes: out of memory, a failed save, a replica), until it has caught up.
pub const PROJECTOR_REDIS_BEHIND: &str = "projector_redis_behind";
/// 1 while a `make rebuild` has begun a new generation and not switched to it yet (running,
/// or stopped midway), else 0 (read at each scrape).
pub const REBUILD_IN_PROGRESS: &str = "projector_rebuild_in_progress";
/// Events the rebuild in progress has replayed so far.
pub const REBUILD_REPLAYED: &str = "projector_rebuild_replayed_events";
/// 1 once the rebuild in progress has read the whole history (it is catching up or switching).
pub const REBUILD_READ_THROUGH: &str = "projector_rebuild_read_through";

/// Batches whose notice to the command APIs (what they applied) could not be sent: requests
/// waiting for those events answer at their bound.
pub const PROJECTOR_TELL_FAILURES: &str = "projector_tell_failures_total";
/// Writes answered, by how their wait to be readable ended (`reached`): `applied` (readable
/// everywhere), `postgres_only` (Redis away or being rebuilt), `dead_lettered`, `held_back`,
/// `parked`, `bound` (`READ_AFTER_WRITE_WAIT_MS` passed), `stalled` (not waited for: a wait
/// hit its bound and no projector has reported progress since), `off` (`READ_AFTER_WRITE=off`).
pub const READ_AFTER_WRITE_WAITS: &str = "read_after_write_waits_total";
/// Seconds a write waited, once committed, to be readable.
pub const READ_AFTER_WRITE_WAIT_DURATION: &str = "read_after_write_wait_seconds";

/// Bounds of the latency histograms: from a cached read (a millisecond) to a timeout.
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Bounds of the batch-size histogram: one event up to a full batch (256).
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed the first time (tests build several services in one
/// process: they share it).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(PROJECTOR_BATCH_SIZE.into()),
                        &BATCH_BUCKETS,
                    )
                })
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder installed first (a test harness's) leaves ours unused: the
            // handle then renders what little it has, which is no reason to stop a service.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        HTTP_REQUESTS,
        "Requests answered, by route and envelope status_code"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer a request"
    );
    describe_counter!(RATE_LIMIT_REFUSALS, "Tries refused by a rate limit");
    describe_gauge!(OUTBOX_BACKLOG, "Events waiting in the outbox");
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest event waiting"
    );
    describe_counter!(RELAY_PUBLISHED, "Events the relay published");
    describe_counter!(RELAY_ERRORS, "Failed relay attempts, each retried");
    describe_counter!(RELAY_PARKED, "Events parked as unpublishable");
    describe_gauge!(CONSUMER_LAG, "Messages not yet applied, per partition");
    describe_histogram!(PROJECTOR_BATCH_SIZE, "Events per applied batch");
    describe_histogram!(
        PROJECTOR_APPLY_DURATION,
        Unit::Seconds,
        "Time to apply a batch"
    );
    describe_counter!(PROJECTOR_EVENTS, "Events handled, by outcome");
    describe_gauge!(PROJECTOR_DEAD_LETTERS, "Dead-lettered events");
    describe_gauge!(PROJECTOR_HELD_BACK, "Aggregates held back");
    describe_gauge!(
        PROJECTOR_REDIS_BEHIND,
        "Whether Redis is left behind the Postgres read models"
    );
    describe_gauge!(
        REBUILD_IN_PROGRESS,
        "Whether a rebuild is begun and not switched"
    );
    describe_gauge!(REBUILD_REPLAYED, "Events the running rebuild replayed");
    describe_counter!(
        PROJECTOR_TELL_FAILURES,
        "Batches whose applied notice could not be sent"
    );
    describe_counter!(
        READ_AFTER_WRITE_WAITS,
        "Writes answered, by how their wait to be readable ended"
    );
    describe_histogram!(
        READ_AFTER_WRITE_WAIT_DURATION,
        Unit::Seconds,
        "Time a committed write waited to be readable"
    );
    describe_gauge!(
        REBUILD_READ_THROUGH,
        "Whether the rebuild read the whole history"
    );
}

/// How long a readiness check waits for a dependency: longer means not ready.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What a service cannot work without.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    Postgres,
    Redis,
    Broker,
}

/// One dependency's answer to a readiness check.
#[derive(Debug, Serialize)]
pub struct Check {
    pub dependency: Dependency,
    /// Why it is not ready; absent when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of `/readyz`: ready only if every dependency answered in time.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

impl Readiness {
    /// Runs the checks side by side, each within [`CHECK_TIMEOUT`].
    pub async fn of<F, E>(checks: Vec<(Dependency, F)>) -> Self
    where
        F: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let checks =
            futures::future::join_all(checks.into_iter().map(|(dependency, check)| async move {
                let error = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(_) => Some(format!("no answer within {CHECK_TIMEOUT:?}")),
                };
                Check { dependency, error }
            }))
            .await;
        Self {
            ready: checks.iter().all(|check| check.error.is_none()),
            checks,
        }
    }

    /// The HTTP status `/readyz` answers with.
    pub fn http_status(&self) -> u16 {
        if self.ready {
            200
        } else {
            503
        }
    }
}

/// A boxed readiness check, so that one service's checks of different stores fit one list.
pub type CheckFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), anyhow::Error>> + Send + 'a>>;

/// Postgres answers a statement.
pub fn postgres_sqlx(pool: &sqlx::PgPool) -> CheckFuture<'_> {
    Box::pin(async move {
        sqlx::query("SELECT 1").execute(pool).await?;
        Ok(())
    })
}

/// Postgres answers a statement (a deadpool pool).
pub fn postgres_pool(pool: &deadpool_postgres::Pool) -> CheckFuture<'_> {
    Box::pin(async move {
        pool.get().await?.simple_query("SELECT 1").await?;
        Ok(())
    })
}

/// Redis answers a PING, on a connection of the check's own: a service's own connection may
/// be waiting out a reconnection backoff, and a probe every few seconds costs little.
pub fn redis_at(settings: &crate::settings::RedisSettings) -> CheckFuture<'static> {
    let url = crate::settings::expose(&settings.redis_url).to_owned();
    Box::pin(async move {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    })
}

/// The broker answers a metadata request. `client` is kept by the caller: librdkafka keeps
/// its connections up in the background, so a check costs one request, not a handshake.
pub fn broker(client: std::sync::Arc<rdkafka::consumer::BaseConsumer>) -> CheckFuture<'static> {
    Box::pin(async move {
        tokio::task::spawn_blocking(move || {
            let answer = rdkafka::consumer::Consumer::fetch_metadata(&*client, None, CHECK_TIMEOUT);
            // Serves the events librdkafka queued meanwhile (errors while the broker was
            // away), which would otherwise pile up in this never-polled client.
            while client.poll(std::time::Duration::ZERO).is_some() {}
            answer
        })
        .await??;
        Ok(())
    })
}
