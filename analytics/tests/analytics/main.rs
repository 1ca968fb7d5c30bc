//! `analytics` against the real Postgres and broker: one test binary, so the stack the
//! end-to-end test runs is linked once.

mod cli;
mod crafted;
mod store;
mod support;
mod through_the_api;
