//! The API's own description: `GET /openapi.json` (an OpenAPI 3.1 document written by
//! hand and shipped inside the binary; a test compares its paths and methods with the
//! router's) and `GET /info` (what this server drives).

use super::{ControlState, Routes};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// The OpenAPI 3.1 document of the control API.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

/// `GET /info`: the server's version, the bank it drives, and where its phones live.
async fn info(State(state): State<ControlState>) -> Json<serde_json::Value> {
    let bank = state.bank();
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "api_base": bank.client.base_url(),
        "embedded_sandbox": bank.embedded.is_some(),
        "home": state.phones().home().root(),
        "phones": state.phones().hosted().len(),
        "last_event_seq": state.events().last_seq(),
    }))
}

/// The routes describing the API.
pub fn routes(r: Routes) -> Routes {
    r.add(Method::GET, "/openapi.json", get(document))
        .add(Method::GET, "/info", get(info))
}
