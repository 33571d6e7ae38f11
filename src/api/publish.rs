//! `POST /api/publish {channel, data}` -> `{"result":{"offset":N,"epoch":E}}`.

use bytes::Bytes;
use simd_json::prelude::*;
use std::rc::Rc;

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
    if crate::session::dispatch::check_channel(core, &channel).is_err() {
        return Response::error(400, ErrorCode::BAD_REQUEST);
    }
    let opts = PublishOptions {
        history: crate::session::dispatch::channel_options(core, &channel).history,
        ..Default::default()
    };
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
