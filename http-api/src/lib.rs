//! What the two HTTP services (command API, query API) share and the projector does not:
//! the client's envelope and parameters, tokens and password hashing, rate limits, media
//! storage, request spans, and the operators' `/metrics` and `/readyz` answers.

pub mod auth;
pub mod cards;
pub mod client;
pub mod http;
pub mod media;
pub mod ops;
pub mod rate_limit;
pub mod telemetry;
