//! The query API: answers every read of the client from the read models the projector builds.
//! It never reads the event store.

pub mod errors;
pub mod operations;
pub mod reads;
pub mod routes;
pub mod settings;
pub mod startup;
