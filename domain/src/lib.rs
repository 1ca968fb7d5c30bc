//! The rules of the Douyin backend, free of IO.
//!
//! Each aggregate keeps the smallest piece of state that owns a rule: an [`account`] per user
//! name holds the uniqueness of names and the credentials, a [`user`] per user id holds the
//! profile. Aggregates decide with a pure `decide` function; the `cqrs_es::Aggregate` impls
//! only hand its events to the framework.

pub mod account;
pub mod id;
pub mod published;
pub mod user;

pub use id::UserId;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

/// Hands the events an aggregate decided on to the framework, applying each to the aggregate.
async fn record<A: Aggregate>(
    aggregate: &mut A,
    sink: &EventSink<A>,
    events: Vec<A::Event>,
) -> Result<(), A::Error> {
    for event in events {
        sink.write(event, aggregate).await;
    }
    Ok(())
}
