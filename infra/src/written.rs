//! What a request's commands wrote: kept per request (a task-local), so that the request can
//! be answered once its events are readable ([`crate::read_after_write`]).

use std::cell::RefCell;
use std::future::Future;

use cqrs_es::{Aggregate, EventEnvelope, Query};

/// One command's mark on its aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    /// The sequence of its last event; None when it decided no event (a like of what is
    /// liked), whose aggregate's last sequence only the event store knows.
    pub sequence: Option<i64>,
}

tokio::task_local! {
    static WRITTEN: RefCell<Vec<Written>>;
}

/// Runs `request`, noting what every command it runs writes.
pub async fn noting<F: Future>(request: F) -> (F::Output, Vec<Written>) {
    WRITTEN
        .scope(RefCell::new(vec![]), async {
            let output = request.await;
            (output, WRITTEN.with(RefCell::take))
        })
        .await
}

/// How many writes are noted so far (None outside [`noting`]).
pub(crate) fn count() -> Option<usize> {
    WRITTEN.try_with(|written| written.borrow().len()).ok()
}

/// Notes `written` if a request is noting: for a write found committed after its answer was
/// lost (the command's own noting saw an error).
pub fn note(written: Written) {
    let _ = WRITTEN.try_with(|noted| noted.borrow_mut().push(written));
}

/// A cqrs-es query noting each command's last committed event.
pub(crate) struct NoteCommitted;

#[async_trait::async_trait]
impl<A: Aggregate> Query<A> for NoteCommitted {
    async fn dispatch(&self, aggregate_id: &str, events: &[EventEnvelope<A>]) {
        if let Some(last) = events.last() {
            note(Written {
                aggregate_type: A::TYPE,
                aggregate_id: aggregate_id.to_owned(),
                sequence: Some(last.sequence as i64),
            });
        }
    }
}
