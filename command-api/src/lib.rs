//! The command API: parses a request, runs the command on its aggregate, and answers once the
//! resulting events are committed and readable (`readable`). Reads are served elsewhere (the
//! query API).

pub mod accounts;
pub mod comments;
pub mod errors;
pub mod follows;
pub mod likes;
pub mod messages;
pub mod operations;
pub mod readable;
pub mod routes;
pub mod sandbox;
pub mod settings;
pub mod startup;
pub mod sweep;
pub mod upload;
pub mod videos;
pub mod writes;
