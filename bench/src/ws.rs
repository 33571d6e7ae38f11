//! A minimal WebSocket client connection over a tokio `TcpStream`, built on tungstenite's raw
//! frame header codec: HTTP/1.1 upgrade handshake (accept key verified), in-place parsing of
//! server frames with no per-message allocation, masked text frames out, pongs for pings.
//!
//! One `WsConn` per simulated client (`client`). Memory per idle connection is one read buffer
//! (grown on demand, 1 KiB to start) plus the socket; the load generator must stay cheap.

use crate::net::{self, Target};
use anyhow::{bail, Context, Result};
use std::io::Cursor;
use std::net::Ipv4Addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Largest message accepted from the server.
const MAX_MESSAGE: usize = 16 << 20;
/// Spare room kept in the read buffer before each read.
const READ_CHUNK: usize = 1024;

/// What one `read_batch` call ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Frames were processed; the connection is open.
    Open,
    /// The server sent a Close frame (its status code, if any).
    Closed(Option<u16>),
    /// The TCP stream ended without a Close frame.
    Eof,
}

/// The server answered the upgrade with something other than `101` (e.g. `503` when shedding).
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub retry_after_s: Option<u64>,
    pub body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upgrade: HTTP {} {}", self.status, self.body)
    }
}

impl std::error::Error for Refused {}

pub struct WsConn {
    stream: TcpStream,
    buf: Vec<u8>,
    frag: Vec<u8>,
    out: Vec<u8>,
    /// Frames that arrived together with the upgrade response and were not parsed yet.
    unparsed: bool,
}

impl WsConn {
    /// TCP connect (bound to `src` when given, receive buffer fixed to `rcvbuf` when given)
    /// and WebSocket upgrade to `path` (with query). A non-101 answer is an error holding a
    /// [`Refused`].
    pub async fn connect(
        target: &Target,
        path: &str,
        src: Option<Ipv4Addr>,
        rcvbuf: Option<u32>,
    ) -> Result<WsConn> {
        let mut stream = net::connect(target.addr, src, rcvbuf)
            .await
            .context("tcp")?;
        let key = generate_key();
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            path, target.host_header
        );
        stream
            .write_all(req.as_bytes())
            .await
            .context("upgrade write")?;
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let head_len = loop {
            if stream.read_buf(&mut buf).await.context("upgrade read")? == 0 {
                bail!("upgrade: connection closed before response");
            }
            if let Some(n) = check_upgrade_response(&buf, &key)? {
                break n;
            }
            if buf.len() > 16 * 1024 {
                bail!("upgrade: response headers too large");
            }
        };
        buf.drain(..head_len);
        Ok(WsConn {
            stream,
            unparsed: !buf.is_empty(),
            buf,
            frag: Vec::new(),
            out: Vec::new(),
        })
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &[u8]) -> Result<()> {
        self.out.clear();
        encode_text(&mut self.out, text);
        self.stream.write_all(&self.out).await?;
        Ok(())
    }

    /// Reads once from the socket and hands every complete text message to `on_text`, which may
    /// queue replies with `encode_text` into the given buffer; replies and pongs are written
    /// before returning.
    pub async fn read_batch(
        &mut self,
        on_text: &mut impl FnMut(&[u8], &mut Vec<u8>),
    ) -> Result<Outcome> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        if self.unparsed {
            // Bytes that came with the upgrade response: parse them before waiting for more.
            self.unparsed = false;
        } else if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Ok(Outcome::Eof);
        }
        self.out.clear();
        let outcome = parse_frames(&mut self.buf, &mut self.frag, &mut self.out, on_text)?;
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
        }
        Ok(outcome)
    }
}

/// Returns the header length once a complete, valid `101` response is buffered.
fn check_upgrade_response(buf: &[u8], key: &str) -> Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf).context("upgrade: bad HTTP response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    if resp.code != Some(101) {
        let retry_after_s = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
        let body = String::from_utf8_lossy(&buf[n..])
            .chars()
            .take(200)
            .collect::<String>();
        return Err(Refused {
            status: resp.code.unwrap_or(0),
            retry_after_s,
            body: body.trim().to_string(),
        }
        .into());
    }
    let accept = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .context("upgrade: no Sec-WebSocket-Accept")?;
    if accept.value != derive_accept_key(key.as_bytes()).as_bytes() {
        bail!("upgrade: wrong Sec-WebSocket-Accept");
    }
    Ok(Some(n))
}

/// Appends a masked (client-to-server) text frame carrying `payload` to `out`.
pub fn encode_text(out: &mut Vec<u8>, payload: &[u8]) {
    encode_frame(out, OpCode::Data(Data::Text), payload);
}

fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let mask = fastrand::u32(..).to_ne_bytes();
    let hdr = FrameHeader {
        opcode,
        mask: Some(mask),
        ..FrameHeader::default()
    };
    hdr.format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// Parses every complete frame at the front of `buf`, removes it, and dispatches it.
fn parse_frames(
    buf: &mut Vec<u8>,
    frag: &mut Vec<u8>,
    out: &mut Vec<u8>,
    on_text: &mut impl FnMut(&[u8], &mut Vec<u8>),
) -> Result<Outcome> {
    let mut pos = 0;
    let mut outcome = Outcome::Open;
    while outcome == Outcome::Open {
        let mut cur = Cursor::new(&buf[pos..]);
        let Some((hdr, len)) = FrameHeader::parse(&mut cur).context("bad frame header")? else {
            break;
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_MESSAGE {
            bail!("frame of {len} bytes exceeds {MAX_MESSAGE}");
        }
        let start = pos + cur.position() as usize;
        if buf.len() - start < len {
            break;
        }
        let payload = &mut buf[start..start + len];
        if let Some(m) = hdr.mask {
            payload
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= m[i & 3]);
        }
        match hdr.opcode {
            OpCode::Data(Data::Text | Data::Binary) if hdr.is_final => on_text(payload, out),
            OpCode::Data(Data::Text | Data::Binary) => {
                frag.clear();
                frag.extend_from_slice(payload);
            }
            OpCode::Data(Data::Continue) => {
                frag.extend_from_slice(payload);
                if frag.len() > MAX_MESSAGE {
                    bail!("fragmented message exceeds {MAX_MESSAGE}");
                }
                if hdr.is_final {
                    on_text(frag, out);
                    *frag = Vec::new();
                }
            }
            OpCode::Control(Control::Ping) => {
                encode_frame(out, OpCode::Control(Control::Pong), payload)
            }
            OpCode::Control(Control::Close) => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                outcome = Outcome::Closed(code);
            }
            _ => {}
        }
        pos = start + len;
    }
    buf.drain(..pos);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![opcode | if fin { 0x80 } else { 0 }];
        if payload.len() < 126 {
            v.push(payload.len() as u8);
        } else {
            v.push(126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    fn run(buf: &mut Vec<u8>) -> (Vec<String>, Vec<u8>, Outcome) {
        let mut got = Vec::new();
        let mut out = Vec::new();
        let mut frag = Vec::new();
        let o = parse_frames(buf, &mut frag, &mut out, &mut |t, _| {
            got.push(String::from_utf8_lossy(t).into_owned())
        })
        .unwrap();
        (got, out, o)
    }

    #[test]
    fn parses_several_frames_and_keeps_partial_tail() {
        let big = "x".repeat(300);
        let mut buf = server_frame(1, true, b"{}");
        buf.extend(server_frame(1, true, big.as_bytes()));
        let partial = server_frame(1, true, b"{\"push\":1}");
        buf.extend_from_slice(&partial[..4]);
        let (got, _, o) = run(&mut buf);
        assert_eq!(got, vec!["{}".to_string(), big]);
        assert_eq!(o, Outcome::Open);
        assert_eq!(buf, partial[..4].to_vec());
        buf.extend_from_slice(&partial[4..]);
        assert_eq!(run(&mut buf).0, vec!["{\"push\":1}".to_string()]);
        assert!(buf.is_empty());
    }

    #[test]
    fn reassembles_fragments_answers_ping_reports_close() {
        let mut buf = server_frame(1, false, b"ab");
        buf.extend(server_frame(0, true, b"cd"));
        buf.extend(server_frame(9, true, b"p"));
        buf.extend(server_frame(8, true, &3012u16.to_be_bytes()));
        let (got, out, o) = run(&mut buf);
        assert_eq!(got, vec!["abcd".to_string()]);
        assert_eq!(out[0], 0x8a, "pong frame, final");
        assert_eq!(out[1], 0x80 | 1, "masked, 1 byte");
        assert_eq!(o, Outcome::Closed(Some(3012)));
    }

    #[test]
    fn refusal_keeps_status_and_retry_after() {
        let resp =
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy";
        let err = check_upgrade_response(resp, "k").unwrap_err();
        let r = err.downcast_ref::<Refused>().expect("typed refusal");
        assert_eq!((r.status, r.retry_after_s), (503, Some(7)));
        assert_eq!(r.body, "busy");
        let resp = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        let err = check_upgrade_response(resp, "k").unwrap_err();
        let r = err.downcast_ref::<Refused>().unwrap();
        assert_eq!((r.status, r.retry_after_s), (401, None));
        assert!(check_upgrade_response(b"HTTP/1.1 101 Switching", "k")
            .unwrap()
            .is_none());
    }

    #[test]
    fn encodes_masked_text() {
        let mut out = Vec::new();
        encode_text(&mut out, b"{}");
        assert_eq!(out.len(), 2 + 4 + 2);
        assert_eq!(out[0], 0x81);
        let mask = [out[2], out[3], out[4], out[5]];
        assert_eq!([out[6] ^ mask[0], out[7] ^ mask[1]], *b"{}");
    }
}
