//! Adapters: everything in the backend that touches the outside world.

pub mod auth;
pub mod backoff;
pub mod cards;
pub mod client;
pub mod envelope;
pub mod event_store;
pub mod http;
pub mod kafka;
pub mod media;
pub mod outbox;
pub mod rate_limit;
pub mod read_store;
pub mod redis_store;
pub mod settings;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
