//! HTTP: the embedded web client, the signaling WebSocket endpoint, the
//! privacy page, and the headers every response carries.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::info;

use crate::serve::ConnSlot;
pub use crate::state::Shared;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// Largest WebSocket message the transport accepts. Messages between the
/// protocol limit and this one get a typed `too_large` error; larger ones
/// close the connection (WebSocket close code 1009).
const WS_TRANSPORT_LIMIT: usize = 1024 * 1024;

/// Bytes a WebSocket reads at once. The transport's default (128 KiB) is
/// allocated per connection and zero-filled up to that size on every poll of
/// the connection, which happens for every message sent to it; signaling
/// messages are small, and larger ones are read in several chunks.
const WS_READ_BUFFER: usize = 4096;

/// Bytes of outgoing frames gathered before they are written.
const WS_WRITE_BUFFER: usize = 16 * 1024;

/// Most bytes a WebSocket keeps waiting to be written. Writes of our own
/// messages wait for the client ([`crate::ws`] gives up after a while), but
/// the library answers every ping with a pong on its own; past this, pongs
/// replace each other instead of piling up. It holds the largest message the
/// server sends (an offer for a full room, a Welcome).
const WS_WRITE_BUFFER_MAX: usize = 2 * 1024 * 1024;

/// Shared state of the HTTP handlers.
pub type AppState = Arc<Shared>;

/// The whole HTTP surface. Serve it with connection info
/// (`into_make_service_with_connect_info::<SocketAddr>`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(app_page))
        .route("/m/{room}", get(app_page))
        .route("/ws", get(ws_upgrade))
        .route("/privacy", get(privacy_page))
        .fallback(get(asset))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        // Outermost: every answer carries the headers, refusals included.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

/// Refuses requests for a host name this server was not configured to
/// answer to. A page of an attacker's domain whose name is made to resolve
/// to this server (DNS rebinding) is then same-origin with nothing here:
/// its requests carry its own name and get 421. IP addresses and localhost
/// cannot be rebound, so they always pass.
async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().host().map(str::to_owned));
    match host {
        Some(h) if host_allowed(&h, &state.config.public_names) => next.run(req).await,
        Some(_) => {
            info!("request for an unknown host name refused");
            (StatusCode::MISDIRECTED_REQUEST, "unknown host name").into_response()
        }
        None => (StatusCode::BAD_REQUEST, "no host name").into_response(),
    }
}

/// Whether a Host header value names this server: an IP address, localhost,
/// or one of the configured public names (any port).
pub fn host_allowed(host: &str, public_names: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || public_names.contains(&name)
}

async fn ws_upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<Extension<ConnSlot>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &state) {
        info!("cross-origin signaling connection refused");
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
    }
    let net = crate::limits::network_of(peer.ip());
    if !state
        .flood_strikes
        .would_allow(&net, std::time::Instant::now())
    {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            "too many flooding connections from your network",
        )
            .into_response();
    }
    ws.max_message_size(WS_TRANSPORT_LIMIT)
        .max_frame_size(WS_TRANSPORT_LIMIT)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_write_buffer_size(WS_WRITE_BUFFER_MAX)
        .on_upgrade(move |socket| async move {
            // The connection counts against the listener's bounds while open.
            let _slot = slot;
            crate::ws::connection(socket, state, peer.ip()).await
        })
}

/// A browser always sends `Origin` with a WebSocket handshake: it must be this
/// server's own origin or one configured. Clients that are not browsers (the
/// bots) send none; they cannot be made to act for a user, so they pass.
fn origin_allowed(headers: &HeaderMap, state: &Shared) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let scheme = if state.tls() { "https" } else { "http" };
    let own = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| origin == format!("{scheme}://{host}"));
    own || state.config.allowed_origins.iter().any(|o| o == origin)
}

async fn privacy_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let french = match uri.query() {
        Some(q) if q.contains("lang=fr") => true,
        Some(q) if q.contains("lang=en") => false,
        _ => headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("fr")),
    };
    let html = crate::privacy::render(&state.config, french);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
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
async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if state.tls() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
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

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn only_addresses_localhost_and_public_names_are_served() {
        let names = vec![String::from("meet.example.org")];
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "127.0.0.1:8080",
            "192.0.2.10",
            "[::1]:8443",
            "[2001:db8::1]",
            "meet.example.org",
            "Meet.Example.org:443",
        ] {
            assert!(host_allowed(ok, &names), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "meet.example.org.evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.example",
            "[not-an-ip]",
            "",
        ] {
            assert!(!host_allowed(bad, &names), "{bad}");
        }
        assert!(!host_allowed("meet.example.org", &[]));
    }
}
