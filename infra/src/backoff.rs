//! Waiting between retries of work that fails while a dependency is away.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(10);

/// Doubles from 100 ms up to 10 s; back to 100 ms after a success.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    pub fn reset(&mut self) {
        self.next = FIRST;
    }

    /// The wait that `wait` will do next.
    pub fn next(&self) -> Duration {
        self.next
    }

    /// Waits, unless `stop` comes first; returns false then.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX);
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = stop.cancelled() => false,
        }
    }
}
