//! `POST /api/batch`: several API commands in one request, as Centrifugo's
//! `{"commands": [{"publish": {...}}, {"broadcast": {...}}, ...], "parallel": false}`,
//! answered `{"replies": [{"publish": {...}}, {"error": {"code", "message"}}, ...]}`, one
//! reply per command, in order (the shape the `cent` API clients parse).
//!
//! Each command runs exactly as its own `POST /api/<method>` would (same checks, same
//! metrics), one after another; `parallel` is accepted and changes nothing but ordering
//! guarantees (they hold either way). A command's failure is its reply's `error`; the batch
//! itself is 200. The batch is refused as a whole (HTTP 400, nothing run) when its body is not
//! that shape (107), a command is not an object with exactly one method (107), names an
//! unknown method or `batch` itself (104), or there are more than `api.max_batch_commands`
//! commands (106).

use std::rc::Rc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ApiCall;
use crate::net::http::Response;
use crate::protocol::ErrorCode;
use crate::runtime::core::Core;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    commands: Vec<Map<String, Value>>,
    #[serde(default)]
    #[allow(dead_code)] // accepted for compatibility; commands run in order either way
    parallel: bool,
}

pub async fn batch(core: &Rc<Core>, body: Vec<u8>) -> Response {
    let Ok(req) = serde_json::from_slice::<BatchRequest>(&body) else {
        return super::bad_request();
    };
    if req.commands.len() > core.cfg.api.max_batch_commands {
        return Response::error(400, ErrorCode::LIMIT_EXCEEDED);
    }
    let mut calls = Vec::with_capacity(req.commands.len());
    for command in req.commands {
        let mut entries = command.into_iter();
        let (Some((name, params)), None) = (entries.next(), entries.next()) else {
            return super::bad_request();
        };
        match super::api_method(&name) {
            Some(ApiCall::Batch) | None => {
                return Response::error(400, ErrorCode::METHOD_NOT_FOUND)
            }
            Some(call) => calls.push((name, call, params)),
        }
    }
    let mut replies = Vec::with_capacity(calls.len());
    for (name, call, params) in calls {
        let answer = super::call(core, call, params.to_string().into_bytes()).await;
        replies.push(reply(&name, &answer.body));
    }
    let body = format!("{{\"replies\":[{}]}}", replies.join(","));
    Response::json(200, body)
}

/// `{"<method>": result}` or `{"error": {...}}` from one command's answer body.
fn reply(name: &str, answer: &[u8]) -> String {
    let answer: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    let mut out = Map::new();
    match (answer.get("error"), answer.get("result")) {
        (Some(error), _) => out.insert("error".into(), error.clone()),
        (None, Some(result)) => out.insert(name.into(), result.clone()),
        (None, None) => out.insert(name.into(), Value::Object(Map::new())),
    };
    Value::Object(out).to_string()
}
