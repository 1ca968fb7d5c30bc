//! The projector: reads the event topics with a consumer group and applies each event, once,
//! to the read models. An offset is stored only after its event is applied, so a crash
//! replays events rather than losing them, and the read models drop what they already have.

pub mod applied;
pub mod consumer;
pub mod dead_letters;
pub mod operations;
pub mod projections;
pub mod rebuild;
pub mod redrive;
pub mod replay;
pub mod settings;
pub mod span;
pub mod startup;
pub mod waiting;
