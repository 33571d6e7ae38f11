//! Cluster introspection through the server API, as Centrifugo's methods:
//!
//! - `POST /api/info {}` -> `{"result":{"nodes":[{uid,name,version,num_clients,num_users,
//!   num_subs,num_channels,uptime,shedding,draining}]}}`: every live node of the engine's registry (Redis:
//!   nodes that announced themselves within `engine.redis.node_ttl_s`; their numbers are
//!   as of their last announcement, this node's are counted now), or this node alone.
//! - `POST /api/channels {pattern?}` -> `{"result":{"channels":{"<name>":{"num_clients":N}}}}`:
//!   channels with subscribers on any node (a survey of every node), names matching
//!   `pattern` (`*` matches any run of characters) when given.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::cluster::{local_info, node_uid, Survey};
use crate::net::http::Response;
use crate::runtime::core::Core;

pub async fn info(core: &Rc<Core>) -> Response {
    let me = local_info(&core.mesh, &core.node_name).await;
    let mut nodes = match core.engine.nodes().await {
        Ok(Some(nodes)) => nodes.into_iter().filter(|n| n.uid != node_uid()).collect(),
        Ok(None) => Vec::new(),
        Err(e) => return super::failed(&e),
    };
    nodes.push(me);
    nodes.sort_by(|a, b| a.name.cmp(&b.name).then(a.uid.cmp(&b.uid)));
    let nodes: Vec<serde_json::Value> = nodes
        .into_iter()
        .map(|n| {
            serde_json::json!({
                "uid": n.uid, "name": n.name, "version": n.version,
                "num_clients": n.num_clients, "num_users": n.num_users,
                "num_subs": n.num_subs, "num_channels": n.num_channels, "uptime": n.uptime,
                "shedding": n.shedding, "draining": n.draining,
            })
        })
        .collect();
    let body = serde_json::json!({"result": {"nodes": nodes}});
    Response::json(200, body.to_string())
}

#[derive(Deserialize, Default)]
struct ChannelsRequest {
    pattern: Option<String>,
}

pub async fn channels(core: &Rc<Core>, body: Vec<u8>) -> Response {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        ChannelsRequest::default()
    } else {
        match serde_json::from_slice::<ChannelsRequest>(&body) {
            Ok(r) => r,
            Err(_) => return super::bad_request(),
        }
    };
    let survey = Survey::Channels {
        pattern: req.pattern.filter(|p| !p.is_empty()),
    };
    let Ok(request) = serde_json::to_vec(&survey) else {
        return super::bad_request();
    };
    let answers = match core.engine.survey(request.into()).await {
        Ok(a) => a,
        Err(e) => return super::failed(&e),
    };
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    for a in answers {
        if let Ok(part) = serde_json::from_slice::<BTreeMap<String, u64>>(&a) {
            for (c, n) in part {
                *all.entry(c).or_default() += n;
            }
        }
    }
    let channels: serde_json::Map<String, serde_json::Value> = all
        .into_iter()
        .map(|(c, n)| (c, serde_json::json!({ "num_clients": n })))
        .collect();
    let body = serde_json::json!({"result": {"channels": channels}});
    Response::json(200, body.to_string())
}
