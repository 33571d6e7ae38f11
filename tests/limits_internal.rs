//! Black-box test of the internal listener (`server.internal_listen`): `/metrics`,
//! `/api/*`, `/health` and `/livez` there; the public port keeps `/health` and WebSockets
//! and answers 404 to `/metrics` and `/api/*`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{http, Client, Overrides, Server};

#[test]
fn internal_endpoints_move_to_the_internal_listener() {
    let mut server = Server::start_with(&Overrides {
        server: "internal_listen = \"127.0.0.1:0\"".into(),
        ..Default::default()
    });
    let line = server
        .wait_log("internal on http://", Duration::from_secs(10))
        .expect("internal listener line");
    let internal: SocketAddr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let public = server.addr;
    let key = [("X-API-Key", common::API_KEY)];
    let body = r#"{"channel":"news","data":{"n":1}}"#;

    assert_eq!(http(public, "GET", "/health", &[], "").0, 200);
    assert_eq!(http(public, "GET", "/metrics", &[], "").0, 404);
    assert_eq!(http(public, "POST", "/api/publish", &key, body).0, 404);
    assert_eq!(http(public, "GET", "/livez", &[], "").0, 404);
    let (mut c, _) = Client::connect(&server, "alice");
    assert!(c.subscribe("news").get("subscribe").is_some());

    let (status, text) = http(internal, "GET", "/metrics", &[], "");
    assert!(
        status == 200 && text.contains("wiresocket_connections"),
        "{status}"
    );
    assert_eq!(http(internal, "GET", "/health", &[], "").0, 200);
    assert_eq!(http(internal, "GET", "/livez", &[], "").0, 200);
    let (status, text) = http(internal, "POST", "/api/publish", &key, body);
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        c.next_pub().0,
        "news",
        "the API publish reached the public client"
    );
    let url = format!("ws://{internal}/connection/websocket");
    assert!(
        tungstenite::client(url, std::net::TcpStream::connect(internal).unwrap()).is_err(),
        "no WebSockets on the internal listener"
    );
}
