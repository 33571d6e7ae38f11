//! Writes replies and pushes as compact JSON into byte buffers.
//!
//! Publication `data` and client `info` are already JSON text and are spliced
//! in verbatim; only strings chosen by clients (channel names, messages) go
//! through the escaper. The same writer serves replies, pushes and the
//! once-per-publication frame built by the hub.

use super::error::ErrorCode;

/// A JSON object being written; `end()` closes it.
pub struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, k);
        self.out.push(b':');
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        string(self.out, v);
        self
    }

    pub fn num(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        self
    }

    /// Splices already-encoded JSON.
    pub fn raw(&mut self, k: &str, json: &[u8]) -> &mut Self {
        self.key(k);
        self.out.extend_from_slice(json);
        self
    }

    /// Opens a nested object under `k`; close it with `end()` before writing more here.
    pub fn obj(&mut self, k: &str) -> Obj<'_> {
        self.key(k);
        Obj::new(self.out)
    }

    /// Opens an array under `k`: call `item` per element, then `end_array`.
    pub fn array(&mut self, k: &str) -> &mut Vec<u8> {
        self.key(k);
        self.out.push(b'[');
        self.out
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// Appends `s` as an escaped JSON string.
pub fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing into a Vec cannot fail");
}

/// Appends `{"id":N,"<method>":{...}}` with the result body written by `body`.
pub fn result(out: &mut Vec<u8>, id: u32, method: &str, body: impl FnOnce(&mut Obj<'_>)) {
    let mut o = Obj::new(out);
    o.num("id", id as u64);
    let mut r = o.obj(method);
    body(&mut r);
    r.end();
    o.end();
}

/// Appends `{"id":N,"error":{"code":..,"message":..,"temporary":..}}`.
pub fn error(out: &mut Vec<u8>, id: u32, e: ErrorCode) {
    let mut o = Obj::new(out);
    o.num("id", id as u64);
    let mut err = o.obj("error");
    err.num("code", e.code as u64).str("message", e.message);
    if e.temporary {
        err.bool("temporary", true);
    }
    err.end();
    o.end();
}

/// A publication object: `{"data":..,"offset":N,"info":{..},"tags":{..}}` (each when present).
pub fn publication(o: &mut Obj<'_>, p: &PublicationJson<'_>) {
    o.raw("data", p.data);
    if p.offset > 0 {
        o.num("offset", p.offset);
    }
    if let Some(info) = p.info {
        o.raw("info", info);
    }
    if let Some(tags) = p.tags {
        o.raw("tags", tags);
    }
}

/// `"publications":[{data,offset,info?,tags?},...]` (history replies, recovered publications).
pub fn publications<'a>(r: &mut Obj<'_>, pubs: impl IntoIterator<Item = PublicationJson<'a>>) {
    let arr = r.array("publications");
    for (i, p) in pubs.into_iter().enumerate() {
        if i > 0 {
            arr.push(b',');
        }
        let mut o = Obj::new(arr);
        publication(&mut o, &p);
        o.end();
    }
    arr.push(b']');
}

/// The parts of a publication as already-encoded JSON.
#[derive(Debug, Clone, Copy)]
pub struct PublicationJson<'a> {
    pub data: &'a [u8],
    pub offset: u64,
    pub info: Option<&'a [u8]>,
    pub tags: Option<&'a [u8]>,
}

/// ClientInfo JSON: `{"user":..,"client":..,"conn_info":..}`.
pub fn client_info(user: &str, client: &str, conn_info: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut o = Obj::new(&mut out);
    client_info_obj(&mut o, user, client, conn_info, None);
    o.end();
    out
}

/// Writes ClientInfo fields into an open object.
pub fn client_info_obj(
    o: &mut Obj<'_>,
    user: &str,
    client: &str,
    conn_info: Option<&[u8]>,
    chan_info: Option<&[u8]>,
) {
    o.str("user", user).str("client", client);
    if let Some(ci) = conn_info {
        o.raw("conn_info", ci);
    }
    if let Some(ci) = chan_info {
        o.raw("chan_info", ci);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn writes_replies() {
        let mut out = vec![];
        result(&mut out, 7, "connect", |r| {
            r.str("client", "c\"1").num("ping", 25).bool("pong", true);
        });
        assert_eq!(
            json(&out),
            serde_json::json!({"id":7,"connect":{"client":"c\"1","ping":25,"pong":true}})
        );
        let mut out = vec![];
        error(&mut out, 3, ErrorCode::TOO_MANY_REQUESTS);
        assert_eq!(json(&out)["error"]["code"], 111);
        assert_eq!(json(&out)["error"]["temporary"], true);
    }
}
