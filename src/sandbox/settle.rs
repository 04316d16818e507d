//! Answers wait for what they changed to be committed: the layer that makes "acknowledged"
//! mean "committed" once commits are grouped ([`GroupCommit`](super::store::GroupCommit)).
//!
//! A handler queues its rows while it holds its entities' locks and returns its answer; this
//! layer then holds the answer until everything queued by the time the handler finished is
//! committed. That covers the request's own rows, and every change it could have seen, so
//! no answer shows the bank in a state a restart would not serve.
//!
//! Once the store has failed a commit, a change (`POST`, `PUT`, `PATCH` or `DELETE` under
//! `/v1/`) is refused before its handler runs, so a refused change changes nothing; a request
//! whose own rows were in the failed commit answers 500 `storage_error`. Reads go on from
//! memory.

use super::state::{SandboxState, storage_error};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::cell::Cell;

tokio::task_local! {
    /// The number of the last queue entry the current request's handler queued (0: none).
    static QUEUED: Cell<u64>;
}

/// Notes that the current request queued entry `number` (outside a request, such as the
/// sweep, nothing waits for it).
pub(crate) fn queued(number: u64) {
    let _ = QUEUED.try_with(|q| q.set(q.get().max(number)));
}

/// The layer: see the module's documentation. The router has it only when the bank is kept
/// in a file; without one it only runs the handler.
pub async fn settle(State(state): State<SandboxState>, request: Request, next: Next) -> Response {
    let Some(group) = &state.0.group else {
        return next.run(request).await;
    };
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD)
        && request.uri().path().starts_with("/v1/");
    if changes && group.failed() {
        return storage_error().into_response();
    }
    let (response, own) = QUEUED
        .scope(Cell::new(0), async {
            let response = next.run(request).await;
            (response, QUEUED.with(Cell::get))
        })
        .await;
    // Whatever the handler saw was queued by now.
    let seen = group.last_queued();
    match group.settled(seen).await {
        Ok(()) => response,
        Err(_) if own > 0 && !group.is_committed(own) => storage_error().into_response(),
        // Its own rows (if any) are committed; a later entry failed.
        Err(_) => response,
    }
}
