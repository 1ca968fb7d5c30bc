//! The rules of the Douyin backend, free of IO.
//!
//! Each aggregate keeps the smallest piece of state that owns a rule: an [`account`] per user
//! name holds the uniqueness of names and the credentials, a [`user`] per user id holds the
//! profile, a [`video`] its author and media, a [`like`] per (video, user) and a [`follow`]
//! per (follower, followee) whether it is on, a [`comment`] who may delete it, and a
//! [`conversation`] per pair of users the order and times of its messages. Aggregates decide with a pure `decide` function; the `cqrs_es::Aggregate` impls
//! only hand its events to the framework.

pub mod account;
pub mod comment;
pub mod conversation;
pub mod follow;
pub mod id;
pub mod like;
pub mod published;
pub mod text;
pub mod user;
pub mod video;

pub use id::{CommentId, MessageId, UserId, VideoId};

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
