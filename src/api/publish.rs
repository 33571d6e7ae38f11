//! `POST /api/publish {channel, data}` -> `{"result":{"offset":N,"epoch":E}}`.

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
    let (channel, data) = {
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
        (channel, data.encode())
    };
    if let Err(e) = core.policy.can(&Who::API, &channel, Op::Publish) {
        // a missing or malformed name is a bad request (400); anything else is a method-level
        // error, HTTP 200 with the code in the body (PROTOCOL.md)
        let e = core.metrics.channel_denied(e);
        let status = if e.code() == ErrorCode::BAD_REQUEST {
            400
        } else {
            200
        };
        return Response::error(status, e.code());
    }
    match core
        .engine
        .publish(&channel, Bytes::from(data), PublishOptions::default())
        .await
    {
        Ok(pos) => {
            let mut out = Vec::new();
            let mut o = Obj::new(&mut out);
            let mut r = o.obj("result");
            r.num("offset", pos.offset).str("epoch", &pos.epoch);
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
