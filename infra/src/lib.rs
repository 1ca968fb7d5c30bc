//! Adapters shared by every binary: the event store and its outbox relay, Kafka, the read
//! stores (Postgres and Redis), settings, metrics, logs and traces, and the published events'
//! contract. What only the two HTTP services need (actix-web, tokens and passwords, media,
//! rate limits) is in `http-api`, so that the projector links none of it.

pub mod backoff;
pub mod contract;
pub mod envelope;
pub mod event_store;
pub mod hardening;
pub mod kafka;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod read_after_write;
pub mod read_store;
pub mod redis_store;
pub mod settings;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod upcast;
pub mod written;

/// Whether a Postgres error code (SQLSTATE) says the server did not answer rather than refused
/// what was asked: classes 08 (connection), 53 (insufficient resources) and 57 (operator
/// intervention: `query_canceled` is what `statement_timeout` raises). Both stores answer
/// those with "unavailable, try again".
pub fn sqlstate_is_unavailable(code: &str) -> bool {
    ["08", "53", "57"]
        .iter()
        .any(|class| code.starts_with(class))
}
