//! Adapters: everything in the backend that touches the outside world.

pub mod auth;
pub mod backoff;
pub mod cards;
pub mod client;
pub mod contract;
pub mod envelope;
pub mod event_store;
pub mod http;
pub mod kafka;
pub mod media;
pub mod metrics;
pub mod ops;
pub mod outbox;
pub mod rate_limit;
pub mod read_store;
pub mod redis_store;
pub mod settings;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

/// Whether a Postgres error code (SQLSTATE) says the server did not answer rather than refused
/// what was asked: classes 08 (connection), 53 (insufficient resources) and 57 (operator
/// intervention: `query_canceled` is what `statement_timeout` raises). Both stores answer
/// those with "unavailable, try again".
pub fn sqlstate_is_unavailable(code: &str) -> bool {
    ["08", "53", "57"]
        .iter()
        .any(|class| code.starts_with(class))
}
