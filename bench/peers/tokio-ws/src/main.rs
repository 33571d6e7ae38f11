//! Benchmark peer "tokio-ws": what a typical Rust realtime service looks like — a tokio
//! multi-thread runtime, axum 0.8 (WebSocket via tokio-tungstenite), `jsonwebtoken` for
//! HS256 and one `tokio::sync::broadcast` channel (capacity 1024) per pub/sub channel.
//!
//! Wire contract (see `bench/peers/README.md`):
//! - `GET /health` → 200.
//! - `POST /publish/<channel>` with `X-API-Key` → 200 `{"ok":true}`, 401 on a bad key.
//! - `GET /ws?token=<JWT>&channels=c1,c2,...` → WebSocket (401 on a bad token); first
//!   frame `{"ready":true}`, then one text frame per publication, body verbatim; a ping
//!   every 25 s.
//!
//! Configured by the environment: `PORT`, `CORES`, `JWT_SECRET`, `API_KEY`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::{select_all, StreamExt};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

const CHANNEL_CAPACITY: usize = 1024;
const MAX_CHANNELS: usize = 64;
const PING_INTERVAL: Duration = Duration::from_secs(25);

struct AppState {
    api_key: String,
    jwt_key: DecodingKey,
    jwt_validation: Validation,
    channels: Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>,
}

#[derive(Deserialize)]
struct Claims {
    #[allow(dead_code)]
    sub: String,
}

#[derive(Deserialize)]
struct WsParams {
    token: Option<String>,
    channels: Option<String>,
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("tokio-ws-peer: environment variable {name} must be set");
        std::process::exit(2);
    })
}

fn env_num(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("tokio-ws-peer: {name}={v} is not a number");
            std::process::exit(2);
        }),
        Err(_) => default,
    }
}

fn main() -> std::io::Result<()> {
    let port = u16::try_from(env_num("PORT", 8080)).expect("PORT out of range");
    let cores = env_num("CORES", 1).max(1);
    let mut jwt_validation = Validation::new(Algorithm::HS256);
    jwt_validation.set_required_spec_claims(&["exp", "sub"]);
    let state = Arc::new(AppState {
        api_key: env_var("API_KEY"),
        jwt_key: DecodingKey::from_secret(env_var("JWT_SECRET").as_bytes()),
        jwt_validation,
        channels: Mutex::new(HashMap::new()),
    });

    let app = Router::new()
        .route(
            "/health",
            get(|| async { json(StatusCode::OK, r#"{"ok":true}"#) }),
        )
        .route("/publish/{channel}", post(publish))
        .route("/ws", get(ws_handler))
        .with_state(state);

    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?
        .block_on(async move {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let listener = tokio::net::TcpListener::bind(addr).await?;
            eprintln!("tokio-ws-peer: listening on {addr} with {cores} worker threads");
            axum::serve(listener, app).await
        })
}

async fn publish(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key_ok = headers
        .get("x-api-key")
        .is_some_and(|k| k.as_bytes() == state.api_key.as_bytes());
    if !key_ok {
        return json(StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#);
    }
    let Ok(text) = String::from_utf8(body.into()) else {
        return json(StatusCode::BAD_REQUEST, r#"{"error":"body is not UTF-8"}"#);
    };
    let sender = state.channels.lock().unwrap().get(&channel).cloned();
    if let Some(sender) = sender {
        // An error only means nobody is subscribed right now.
        let _ = sender.send(Utf8Bytes::from(text));
    }
    json(StatusCode::OK, r#"{"ok":true}"#)
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn ws_handler(
    State(state): State<Arc<AppState>>,
    Query(params): Query<WsParams>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let token = params.token.unwrap_or_default();
    if decode::<Claims>(&token, &state.jwt_key, &state.jwt_validation).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut channels: Vec<String> = params
        .channels
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    channels.sort_unstable();
    channels.dedup();
    if channels.len() > MAX_CHANNELS || channels.iter().any(String::is_empty) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    // tungstenite's default read buffer is 128 KiB, zero-filled on first read (~138 KiB RSS per
    // idle connection); a service built to hold many connections shrinks it, so this peer does.
    upgrade
        .read_buffer_size(4096)
        .on_upgrade(move |socket| serve_socket(state, socket, channels))
}

async fn serve_socket(state: Arc<AppState>, mut socket: WebSocket, channels: Vec<String>) {
    let receivers: Vec<_> = {
        let mut map = state.channels.lock().unwrap();
        channels
            .iter()
            .map(|c| {
                let sender = map
                    .entry(c.clone())
                    .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0);
                BroadcastStream::new(sender.subscribe())
            })
            .collect()
    };
    let mut publications = select_all(receivers);
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);

    if socket
        .send(Message::Text(Utf8Bytes::from_static(r#"{"ready":true}"#)))
        .await
        .is_ok()
    {
        loop {
            tokio::select! {
                publication = publications.next() => match publication {
                    Some(Ok(text)) => {
                        if socket.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                    // Lagged: this receiver skipped messages; that's broadcast's contract.
                    Some(Err(_)) => {}
                    None => break,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => {
                    if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                        break;
                    }
                }
            }
        }
    }

    // Drop our receivers, then forget channels nobody listens to any more.
    drop(publications);
    let mut map = state.channels.lock().unwrap();
    for c in &channels {
        if map.get(c).is_some_and(|s| s.receiver_count() == 0) {
            map.remove(c);
        }
    }
}
