//! What the bench binaries share (each binary in `src/bin/` is one part of `make bench`):
//!
//! - [`positions`]: where a consumer group stands on the projector's topics, and where they
//!   end (how far behind the projector is).
//! - [`backlog`]: events written straight into the event store, as a burst of likes the
//!   projector has to catch up with.

pub mod backlog;
pub mod positions;
