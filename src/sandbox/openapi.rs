//! `GET /sandbox/openapi.json`: the sandbox's OpenAPI 3.1 document, written by hand and shipped
//! inside the binary. `tests/sandbox_openapi.rs` checks its routes and methods against the
//! router; `.ci/schemathesis.sh` checks every answer of a running sandbox against its schemas.
//! Import it into Postman or a client generator.

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI 3.1 document of the sandbox.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// `GET /sandbox/openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
