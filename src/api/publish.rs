//! `POST /api/publish {channel, data, idempotency_key?, tags?, skip_history?}` ->
//! `{"result":{"offset":N,"epoch":E}}` (no position for channels without history).
//!
//! `tags` must be an object of string values (else 400); they travel with the
//! publication. A repeat with the same `idempotency_key` within
//! `engine.idempotency_ttl_s` answers the first result and publishes nothing.
//! `skip_history` delivers without storing (no offset). `data` longer than the
//! namespace's `max_publication_bytes` is error 106 (HTTP 200, a method-level error).

use bytes::Bytes;
use simd_json::prelude::*;
use std::rc::Rc;

use crate::channel::{Op, Who};
use crate::engine::PublishOptions;
use crate::net::http::Response;
use crate::protocol::reply::Obj;
use crate::protocol::ErrorCode;
use crate::runtime::core::Core;

pub async fn publish(core: &Rc<Core>, mut body: Vec<u8>) -> Response {
    let (channel, data, mut opts) = {
        let Ok(v) = simd_json::to_borrowed_value(&mut body) else {
            return Response::error(400, ErrorCode::BAD_REQUEST);
        };
        let channel = v
            .get("channel")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_owned();
        let Some(data) = v.get("data") else {
            return Response::error(400, ErrorCode::BAD_REQUEST);
        };
        let tags = match v.get("tags") {
            None => None,
            Some(t)
                if t.as_object()
                    .is_some_and(|o| o.values().all(|x| x.is_str())) =>
            {
                Some(Bytes::from(t.encode()))
            }
            Some(_) => return Response::error(400, ErrorCode::BAD_REQUEST),
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
        (channel, data.encode(), opts)
    };
    let options = match core.policy.can(&Who::API, &channel, Op::Publish) {
        Ok(o) => o,
        Err(e) => {
            // a missing or malformed name is a bad request (400); anything else is a
            // method-level error, HTTP 200 with the code in the body (PROTOCOL.md)
            let e = e.counted(&core.metrics);
            let status = if e.code() == ErrorCode::BAD_REQUEST {
                400
            } else {
                200
            };
            return Response::error(status, e.code());
        }
    };
    if options.max_publication_bytes > 0 && data.len() > options.max_publication_bytes {
        crate::limits::Refusal::PublicationSize.counted(&core.metrics);
        return Response::error(200, ErrorCode::LIMIT_EXCEEDED);
    }
    opts.history = options.history();
    match core.engine.publish(&channel, Bytes::from(data), opts).await {
        Ok(pos) => {
            let mut out = Vec::new();
            let mut o = Obj::new(&mut out);
            let mut r = o.obj("result");
            if pos.offset > 0 {
                // a channel without history has no stream position (as in Centrifugo)
                r.num("offset", pos.offset).str("epoch", &pos.epoch);
            }
            r.end();
            o.end();
            Response::json(200, out)
        }
        Err(e) => {
            let status = if e.code().temporary { 503 } else { 500 };
            Response::error(status, e.code())
        }
    }
}
