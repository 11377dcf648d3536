//! The HTTP routes and headers: arbitrary method, path and headers through
//! the server's router (security headers, host check, pages, assets, the
//! privacy page, the WebSocket endpoint). Nothing may panic, nothing answers
//! 500, and every answer carries the security headers.
//!
//! Input: the first byte picks the method; then the path up to the first
//! newline; then `name: value` lines.

#![no_main]

use std::sync::{Arc, OnceLock};

use aparte_server::Config;
use aparte_server::http::{Shared, router};
use aparte_server::storage::Storage;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct App {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

static APP: OnceLock<App> = OnceLock::new();

fn app() -> &'static App {
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut config = Config::ephemeral();
        config.public_names = vec!["meet.example.org".into()];
        // Media loops that are never reached: a request cannot get that far
        // without a real WebSocket upgrade.
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let storage = Storage::new(&config.data_dir, 1);
        let shared = runtime.block_on(async { Arc::new(Shared::new(config, vec![tx], storage)) });
        App {
            runtime,
            router: router(shared),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::OPTIONS,
        Method::PUT,
    ][usize::from(m) % 5]
        .clone();
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or("/");
    let mut req = Request::builder().method(method).uri(path);
    for line in lines.take(32) {
        if let Some((name, value)) = line.split_once(':') {
            req = req.header(name.trim(), value.trim());
        }
    }
    let Ok(mut req) = req.body(Body::empty()) else {
        return;
    };
    req.extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            5555,
        ))));
    let app = app();
    let res = app
        .runtime
        .block_on(app.router.clone().oneshot(req))
        .expect("the router is infallible");
    assert_ne!(res.status().as_u16(), 500, "a server error");
    assert!(res.headers().contains_key("content-security-policy"));
    assert!(res.headers().contains_key("referrer-policy"));
});
