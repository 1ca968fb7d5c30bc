//! The whole system through HTTP: one test binary, so the stack is linked once rather than
//! once per file (each link is hundreds of megabytes and most of a build's time).

mod accounts;
mod contract;
mod dead_letters;
mod hostile;
mod interactions;
mod leftovers;
mod openapi;
mod operations;
mod privacy;
mod read_after_write;
mod rebuild;
mod replay;
mod resilience;
mod s3;
mod traces;
mod verify;
mod videos;
