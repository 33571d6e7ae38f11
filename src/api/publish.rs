//! `POST /api/publish {channel, data, idempotency_key?, tags?, skip_history?}` ->
//! `{"result":{"offset":N,"epoch":E}}` (no position for channels without history), and
//! `POST /api/broadcast {channels:[...], data, idempotency_key?, tags?, skip_history?}` ->
//! `{"result":{"responses":[{"result":{..}} | {"error":{..}}, ...]}}`, one entry per channel
//! in the order given (as Centrifugo).
//!
//! `tags` must be an object of string values (else 400); they travel with the
//! publication. A repeat with the same `idempotency_key` within
//! `engine.idempotency_ttl_s` answers the first result and publishes nothing.
//! `skip_history` delivers without storing (no offset). `data` longer than the
//! namespace's `max_publication_bytes` is error 106 (HTTP 200, a method-level error).
//! A broadcast names at most `api.max_broadcast_channels` channels (else 400); a
//! channel's failure is its entry's error, the others are still published.

use bytes::Bytes;
use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::rc::Rc;

use crate::channel::{Op, Who};
use crate::engine::{PublishOptions, StreamPosition};
use crate::net::http::Response;
use crate::protocol::reply::Obj;
use crate::protocol::ErrorCode;
use crate::runtime::core::Core;

/// The publication fields shared by `publish` and `broadcast`; `None` on a bad request.
fn options(v: &BorrowedValue<'_>) -> Option<(Vec<u8>, PublishOptions)> {
    let data = v.get("data")?;
    let tags = match v.get("tags") {
        None => None,
        Some(t)
            if t.as_object()
                .is_some_and(|o| o.values().all(|x| x.is_str())) =>
        {
            Some(Bytes::from(t.encode()))
        }
        Some(_) => return None,
    };
    let opts = PublishOptions {
        idempotency_key: v
            .get("idempotency_key")
            .and_then(|k| k.as_str())
            .filter(|k| !k.is_empty())
            .map(str::to_owned),
        tags,
        skip_history: v
            .get("skip_history")
            .and_then(|b| b.as_bool())
            .unwrap_or(false),
        ..Default::default()
    };
    Some((data.encode().into_bytes(), opts))
}

pub async fn publish(core: &Rc<Core>, mut body: Vec<u8>) -> Response {
    let (channel, data, opts) = {
        let Ok(v) = simd_json::to_borrowed_value(&mut body) else {
            return Response::error(400, ErrorCode::BAD_REQUEST);
        };
        let channel = v
            .get("channel")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_owned();
        let Some((data, opts)) = options(&v) else {
            return Response::error(400, ErrorCode::BAD_REQUEST);
        };
        (channel, data, opts)
    };
    match publish_one(core, &channel, Bytes::from(data), opts).await {
        Ok(pos) => {
            let mut out = Vec::new();
            let mut o = Obj::new(&mut out);
            let mut r = o.obj("result");
            position(&mut r, &pos);
            r.end();
            o.end();
            Response::json(200, out)
        }
        Err((status, code)) => Response::error(status, code),
    }
}

pub async fn broadcast(core: &Rc<Core>, mut body: Vec<u8>) -> Response {
    let (channels, data, opts) = {
        let Ok(v) = simd_json::to_borrowed_value(&mut body) else {
            return Response::error(400, ErrorCode::BAD_REQUEST);
        };
        let channels: Option<Vec<String>> =
            v.get("channels").and_then(|c| c.as_array()).and_then(|a| {
                a.iter()
                    .map(|c| c.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            });
        let max = core.cfg.api.max_broadcast_channels;
        let Some(channels) = channels.filter(|c| !c.is_empty() && c.len() <= max) else {
            return Response::error(400, ErrorCode::BAD_REQUEST);
        };
        let Some((data, opts)) = options(&v) else {
            return Response::error(400, ErrorCode::BAD_REQUEST);
        };
        (channels, Bytes::from(data), opts)
    };
    let mut results = Vec::with_capacity(channels.len());
    for channel in &channels {
        results.push(publish_one(core, channel, data.clone(), opts.clone()).await);
    }
    let mut out = Vec::new();
    let mut o = Obj::new(&mut out);
    let mut r = o.obj("result");
    let arr = r.array("responses");
    for (i, res) in results.iter().enumerate() {
        if i > 0 {
            arr.push(b',');
        }
        let mut e = Obj::new(arr);
        match res {
            Ok(pos) => {
                let mut r = e.obj("result");
                position(&mut r, pos);
                r.end();
            }
            Err((_, code)) => {
                let mut err = e.obj("error");
                err.num("code", code.code as u64)
                    .str("message", code.message);
                if code.temporary {
                    err.bool("temporary", true);
                }
                err.end();
            }
        }
        e.end();
    }
    arr.push(b']');
    r.end();
    o.end();
    Response::json(200, out)
}

/// A channel without history has no stream position (as in Centrifugo).
fn position(r: &mut Obj<'_>, pos: &StreamPosition) {
    if pos.offset > 0 {
        r.num("offset", pos.offset).str("epoch", &pos.epoch);
    }
}

/// Checks the channel and publishes; `Err` is the HTTP status and the error code.
async fn publish_one(
    core: &Rc<Core>,
    channel: &str,
    data: Bytes,
    mut opts: PublishOptions,
) -> Result<StreamPosition, (u16, ErrorCode)> {
    let options = core
        .policy
        .can(&Who::API, channel, Op::Publish)
        .map_err(|e| super::policy_refusal(core, e))?;
    if options.max_publication_bytes > 0 && data.len() > options.max_publication_bytes {
        crate::limits::Refusal::PublicationSize.counted(&core.metrics);
        return Err((200, ErrorCode::LIMIT_EXCEEDED));
    }
    opts.history = options.history();
    core.engine
        .publish(channel, data, opts)
        .await
        .map_err(|e| super::engine_failure(&e))
}
