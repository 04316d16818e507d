//! The web phone: a page at `/` that draws every hosted phone as a phone and drives it
//! through the control API, live from the event stream.
//!
//! Plain HTML, CSS and JS compiled into the binary with `include_str!`, so `vphone serve`
//! needs no Node build and no files next to it. These routes sit outside the API's route
//! table (they are not part of the OpenAPI document) and outside the bearer-token check:
//! the files are the same public code for everybody and hold no state; every call the
//! page makes goes to the API, which checks the token as always.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The page.
pub const INDEX_HTML: &str = include_str!("web/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("web/app.js");
/// Its style sheet.
pub const APP_CSS: &str = include_str!("web/app.css");

/// The headers every file gets: its type, no caching (the binary may change under the same
/// URL), and a policy that lets the page load only its own files and talk only to its
/// own origin.
fn served(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

async fn index() -> impl IntoResponse {
    served("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> impl IntoResponse {
    served("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> impl IntoResponse {
    served("text/css; charset=utf-8", APP_CSS)
}

/// The page's routes: `/`, `/web/app.js`, `/web/app.css`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/web/app.js", get(app_js))
        .route("/web/app.css", get(app_css))
}
