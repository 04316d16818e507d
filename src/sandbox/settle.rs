//! Answers wait for what they changed to be committed: the layer that makes "acknowledged"
//! mean "committed" once commits are grouped ([`GroupCommit`](super::store::GroupCommit)).
//!
//! A handler queues its rows while it holds its entities' locks and returns its answer; this
//! layer then holds the answer of every `/v1/` request until everything queued by the time
//! the handler finished is committed. That covers the request's own rows, and every change
//! it could have seen, so no answer shows the bank in a state a restart would not serve.
//!
//! Once the store has failed a commit, memory may hold changes the file does not: every
//! `/v1/` request is then refused with 500 `storage_error` (before its handler runs, so a
//! refused change changes nothing), and so is one whose wait ended in the failure, read or
//! change. The token endpoints and `/sandbox/*` go on (`/sandbox/health` says the store
//! failed).

use super::state::{SandboxState, storage_error};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The middleware's last step: see the module's documentation. It waits only when the bank is
/// kept in a file.
pub async fn settle(state: &SandboxState, request: Request, next: Next) -> Response {
    let Some(group) = &state.0.group else {
        return next.run(request).await;
    };
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    if group.failed() {
        return storage_error().into_response();
    }
    let response = next.run(request).await;
    // Whatever the handler saw, and whatever it changed, was queued by now.
    match group.settled(group.last_queued()).await {
        Ok(()) => response,
        Err(_) => storage_error().into_response(),
    }
}
