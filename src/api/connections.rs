//! `POST /api/connections {user?, limit?}`: the connected clients cluster-wide with their
//! session records, as Centrifugo's `connections` (a map keyed by client id):
//!
//! ```json
//! {"result":{"connections":{"<client>":{"user":"u","node":"<uid>","node_name":"a",
//!   "connected_at":1700000000,"expire_at":1700003600,"name":"js","version":"5.0.0",
//!   "channels":{"news":{"offset":7,"epoch":"abcd"},"chat":{"offset":0}},
//!   "app_name":"js","app_version":"5.0.0","transport":"websocket","protocol":"json"}}}}
//! ```
//!
//! (`app_name`, `app_version`, `transport` and `protocol` are Centrifugo's `ConnectionInfo`
//! fields, which the `cent` API clients require.)
//!
//! Only `user`'s connections when `user` is given (a non-empty string). At most `limit`
//! (default and ceiling `api.max_connections_listed`; a larger one is lowered to it).
//! With the Redis engine the records come from Redis (every node's clients, their positions
//! as of each core's last sync, `engine.redis.session_sync_ms`; a `user`'s answer may come
//! from this core's lookup cache, `engine.redis.session_lookup_cache_ms` old at most); with
//! the memory engine from this node's sessions, now (`cluster::sessions`). A body that is
//! not such a JSON object is 400 (107). `expression` (Centrifugo PRO's filter, which the
//! `cent` clients always send) may be empty; filters are not supported, so a non-empty one
//! is 400 (107).

use serde::Deserialize;
use std::rc::Rc;

use crate::net::http::Response;
use crate::runtime::core::Core;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConnectionsRequest {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    /// Centrifugo PRO's filter expression (`cent` always sends one): only an empty one is
    /// accepted; filters are not supported (400, error 107).
    #[serde(default)]
    expression: Option<String>,
}

pub async fn connections(core: &Rc<Core>, body: Vec<u8>) -> Response {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        ConnectionsRequest::default()
    } else {
        match serde_json::from_slice::<ConnectionsRequest>(&body) {
            Ok(r) => r,
            Err(_) => return super::bad_request(),
        }
    };
    if req.expression.as_deref().is_some_and(|e| !e.is_empty()) {
        return super::bad_request();
    }
    let max = core.cfg.api.max_connections_listed.max(1);
    let limit = match req.limit {
        None | Some(0) => max,
        Some(n) => usize::try_from(n).unwrap_or(max).min(max),
    };
    let user = req.user.filter(|u| !u.is_empty());
    let records =
        match crate::cluster::sessions::connections(&core.env, &core.mesh, user, limit).await {
            Ok(r) => r,
            Err(e) => return super::failed(&e),
        };
    let mut map = serde_json::Map::new();
    for r in records {
        let client = r.client.clone();
        if let Ok(serde_json::Value::Object(mut o)) = serde_json::to_value(&r) {
            o.remove("client");
            // Centrifugo's ConnectionInfo fields, which its API clients (`cent`) require
            o.insert("app_name".into(), r.name.clone().into());
            o.insert("app_version".into(), r.version.clone().into());
            o.insert("transport".into(), "websocket".into());
            o.insert("protocol".into(), "json".into());
            map.insert(client, serde_json::Value::Object(o));
        }
    }
    let body = serde_json::json!({"result": {"connections": map}});
    Response::json(200, body.to_string())
}
