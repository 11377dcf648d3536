//! HTTP: the embedded web client, the signaling WebSocket endpoint, and the
//! headers every response carries.

use axum::Router;
use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;

use crate::media::MediaCmd;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// Largest WebSocket message the transport accepts. Messages between the
/// protocol limit and this one get a typed `too_large` error; larger ones
/// close the connection (WebSocket close code 1009).
const WS_TRANSPORT_LIMIT: usize = 1024 * 1024;

/// Shared state of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    media: mpsc::Sender<MediaCmd>,
}

impl AppState {
    /// State that hands signaling to the media loop behind `media`.
    pub fn new(media: mpsc::Sender<MediaCmd>) -> Self {
        AppState { media }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(app_page))
        .route("/m/{room}", get(app_page))
        .route("/ws", get(ws_upgrade))
        .fallback(get(asset))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn ws_upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(WS_TRANSPORT_LIMIT)
        .on_upgrade(move |socket| crate::ws::connection(socket, state.media))
}

async fn app_page() -> Response {
    serve("index.html")
}

async fn asset(uri: Uri) -> Response {
    serve(uri.path().trim_start_matches('/'))
}

fn serve(path: &str) -> Response {
    match assets::ASSETS.iter().find(|(p, _)| *p == path) {
        Some((p, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type(p)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Headers on every response. Meeting links are secrets, so no referrer ever
/// leaves the page; nothing but this origin may be loaded or connected to.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; \
         worker-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
         form-action 'self'",
    );
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(
        h,
        "permissions-policy",
        "camera=(self), microphone=(self), display-capture=(self), geolocation=(), payment=(), usb=()",
    );
    set(h, "cross-origin-opener-policy", "same-origin");
    res
}
