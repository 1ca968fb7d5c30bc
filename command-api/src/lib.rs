//! The command API: parses a request, runs the command on its aggregate and answers once the
//! resulting events are committed. Reads are served elsewhere (the query API).

pub mod accounts;
pub mod errors;
pub mod routes;
pub mod settings;
pub mod startup;
