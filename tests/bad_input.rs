//! Walks the bad-input table of `docs/BAD_INPUT.md` against a real server.
//!
//! Each table row names a `case`, the answer the server gives (HTTP status and API error
//! code, WebSocket close code, or protocol error code) and the metrics that count it. For
//! every row this test sends the case's input (the function of the same id in [`cases`]),
//! compares what came back with the row's answer cell (parsed from the document, so the
//! document cannot drift from the server), and checks that every metric of the row grew by
//! at least one. A row without a case, or a case without a row, fails the test.
//!
//! One server runs every case (its config below holds every limit the cases need); cases
//! use fresh connections and their own user names, and run one after the other, so each
//! metric delta belongs to its case.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{http, masked_frame, now_s, Overrides, RawWs, Server, API_KEY, SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const TABLE: &str = include_str!("../docs/BAD_INPUT.md");
const AUD: &str = "bad-input-aud";
const ISS: &str = "bad-input-iss";
/// `server.header_timeout_ms` (and `body_timeout_ms`) of the test servers: the timeout cases
/// wait this long; every other case must get from accept to `connect` within it.
const HEADER_TIMEOUT_MS: u64 = 2500;
/// `websocket.max_message_bytes` of the test server.
const MAX_MESSAGE: usize = 4096;
/// `server.max_body_bytes` of the test server.
const MAX_BODY: usize = 2048;
/// `api.max_batch_commands` of the test server.
const MAX_BATCH: usize = 3;
/// `channels.max_subscriptions_per_client` of the test server.
const MAX_SUBSCRIPTIONS: usize = 3;
/// `server.max_connections_per_user` of the test server.
const USER_CONNECTIONS: usize = 2;
/// `websocket.command_burst` of the test server (`command_rate_per_s` is 1).
const BURST: usize = 12;

/// What the server answered.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// HTTP status, and the `error.code` of a JSON body, if any.
    Http(u16, Option<u64>),
    /// The WebSocket close code (after a `disconnect` push for codes >= 3000).
    Close(u16),
    /// A command reply carrying `error.code`.
    Error(u64),
    /// The connection was closed without any answer.
    Silent,
    /// Not refused at all (never in the table: a case seeing it fails).
    Accepted(String),
}

/// Parses an answer cell: `HTTP 401 error 101`, `HTTP 413`, `close 3501`, `error 104`,
/// `no answer`.
fn parse_answer(cell: &str) -> Answer {
    let words: Vec<&str> = cell.split_whitespace().collect();
    let num = |i: usize| -> u64 {
        words
            .get(i)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("answer {cell:?}: word {i} is not a number"))
    };
    match words.as_slice() {
        ["HTTP", _] => Answer::Http(num(1) as u16, None),
        ["HTTP", _, "error", _] => Answer::Http(num(1) as u16, Some(num(3))),
        ["close", _] => Answer::Close(num(1) as u16),
        ["error", _] => Answer::Error(num(1)),
        ["no", "answer"] => Answer::Silent,
        _ => panic!("answer cell {cell:?} is not one of the forms the test reads"),
    }
}

/// One table row.
struct Row {
    case: String,
    answer: Answer,
    /// (metric name, label matchers such as `code="3501"`).
    metrics: Vec<(String, Vec<String>)>,
}

/// The backticked spans of a cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

fn parse_metric(span: &str) -> (String, Vec<String>) {
    match span.split_once('{') {
        None => (span.to_string(), vec![]),
        Some((name, labels)) => {
            let labels = labels.strip_suffix('}').expect("metric labels end with }");
            (
                name.to_string(),
                labels.split(',').map(|l| l.trim().to_string()).collect(),
            )
        }
    }
}

/// The rows of every table whose first column holds a backticked case id.
fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for line in TABLE.lines() {
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(cells.len() >= 6, "row with too few cells: {line}");
        let case = code_spans(cells[1])[0].to_string();
        let answer = parse_answer(
            code_spans(cells[3])
                .first()
                .unwrap_or_else(|| panic!("{case}: no answer")),
        );
        let metrics: Vec<_> = code_spans(cells[4]).into_iter().map(parse_metric).collect();
        assert!(!metrics.is_empty(), "{case}: no metric");
        rows.push(Row {
            case,
            answer,
            metrics,
        });
    }
    rows
}

/// The server every case runs against.
fn start() -> Server {
    Server::start_with(&Overrides {
        server: format!(
            "header_timeout_ms = {HEADER_TIMEOUT_MS}\nbody_timeout_ms = {HEADER_TIMEOUT_MS}\nmax_body_bytes = {MAX_BODY}\n\
             allowed_origins = [\"https://app.example\"]\n\
             max_connections_per_user = {USER_CONNECTIONS}\n"
        ),
        websocket: format!(
            "max_message_bytes = {MAX_MESSAGE}\ncommand_rate_per_s = 1\ncommand_burst = {BURST}\n"
        ),
        auth: format!(
            "algorithms = [\"HS256\", \"RS256\"]\npublic_keys = [\"{}\"]\n\
             audience = \"{AUD}\"\nissuer = \"{ISS}\"\n",
            key_path("rsa-a.pub.pem")
        ),
        channels: format!(
            "max_subscriptions_per_client = {MAX_SUBSCRIPTIONS}\n\
             [[channels.namespaces]]\nname = \"small\"\nmax_publication_bytes = 16\n\
             allow_publish_for_client = true\n\
             [[channels.namespaces]]\nname = \"readonly\"\n\
             [[channels.namespaces]]\nname = \"dm\"\nallow_user_limited_channels = true\n\
             [[channels.namespaces]]\nname = \"hist\"\nhistory_size = 5\n"
        ),
        env: vec![(
            "WIRESOCKET_API__MAX_BATCH_COMMANDS".into(),
            MAX_BATCH.to_string(),
        )],
        ..Default::default()
    })
}

fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_row_of_the_bad_input_table_holds_against_a_real_server() {
    let rows = rows();
    let cases: BTreeMap<&str, Case> = cases().into_iter().collect();
    let mut seen = std::collections::BTreeSet::new();
    for r in &rows {
        assert!(seen.insert(r.case.as_str()), "row {} twice", r.case);
        assert!(
            cases.contains_key(r.case.as_str()),
            "row {} has no case in tests/bad_input.rs",
            r.case
        );
    }
    for id in cases.keys() {
        assert!(
            seen.contains(id),
            "case {id} has no row in docs/BAD_INPUT.md"
        );
    }
    let ctx = Ctx {
        server: start(),
        proxied: Default::default(),
        regional: Default::default(),
        n: Default::default(),
    };
    let mut failures = Vec::new();
    for row in &rows {
        let server = ctx.server_of(&row.case);
        let before = server.metrics();
        let got = cases[row.case.as_str()](&ctx);
        if got != row.answer {
            failures.push(format!(
                "{}: answered {got:?}, the table says {:?}",
                row.case, row.answer
            ));
            continue;
        }
        for (name, labels) in &row.metrics {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            if !before.contains(&format!("# TYPE {name} ")) {
                failures.push(format!("{}: {name} is not in /metrics", row.case));
                continue;
            }
            let was = common::metric_sum(&before, name, &labels);
            // a close is counted just after the client has seen it: wait for it
            let until = Instant::now() + Duration::from_secs(10);
            let now = loop {
                let now = server.metric_sum(name, &labels);
                if now > was || Instant::now() > until {
                    break now;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if now < was + 1.0 {
                failures.push(format!(
                    "{}: {name}{{{}}} stayed at {was}",
                    row.case,
                    labels.join(",")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows do not hold:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Prints what every case gets now and which metric samples changed (for writing a new
/// row): `cargo test --test bad_input -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_what_each_case_gets() {
    let ctx = Ctx {
        server: start(),
        proxied: Default::default(),
        regional: Default::default(),
        n: Default::default(),
    };
    for (id, case) in cases() {
        let server = ctx.server_of(id);
        let before = server.metrics();
        let got = case(&ctx);
        std::thread::sleep(Duration::from_millis(300));
        let after = server.metrics();
        let was: std::collections::HashMap<&str, &str> = before
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .collect();
        let changed: Vec<&str> = after
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("bytes") && !l.contains("messages"))
            .filter(|l| {
                l.rsplit_once(' ')
                    .is_some_and(|(k, v)| was.get(k).is_none_or(|w| w != &v))
            })
            .collect();
        println!("{id}\t{got:?}\t{}", changed.join("  "));
    }
}

// ---------------------------------------------------------------------------------------
// the cases

type Case = fn(&Ctx) -> Answer;

struct Ctx {
    server: Server,
    /// The server behind a trusted proxy (the `proxy.*` cases), started when first needed.
    proxied: std::cell::OnceCell<Server>,
    /// The server with `[regions]` (the `region.*` cases), started when first needed.
    regional: std::cell::OnceCell<Server>,
    n: std::cell::Cell<u32>,
}

impl Ctx {
    /// A server that trusts 127.0.0.1 as a proxy (so the test's connections may start with
    /// a PROXY v2 header).
    fn proxied(&self) -> &Server {
        self.proxied.get_or_init(|| {
            Server::start_with(&Overrides {
                server: format!(
                    "header_timeout_ms = {HEADER_TIMEOUT_MS}\ntrusted_proxies = [\"127.0.0.1/32\"]\n"
                ),
                ..Default::default()
            })
        })
    }

    /// A server with `[regions]` enabled, namespace `docs` pinned, and a pin Redis that
    /// does not answer (a closed loopback port).
    fn regional(&self) -> &Server {
        self.regional.get_or_init(|| {
            let port = wiresocket_testkit::free_port();
            let env = [
                ("WIRESOCKET_REGIONS__ENABLED", "true".to_owned()),
                ("WIRESOCKET_REGIONS__NAME", "eu-central-1".into()),
                (
                    "WIRESOCKET_REGIONS__URL",
                    "wss://eu-central-1.example.net/connection/websocket".into(),
                ),
                (
                    "WIRESOCKET_REGIONS__DEFAULT_PIN_REDIS",
                    format!("redis://127.0.0.1:{port}/0"),
                ),
                ("WIRESOCKET_REGIONS__TIMEOUT_MS", "300".into()),
            ];
            Server::start_with(&Overrides {
                server: format!("header_timeout_ms = {HEADER_TIMEOUT_MS}\n"),
                channels: "[[channels.namespaces]]\nname = \"docs\"\npinned = true\n".into(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                ..Default::default()
            })
        })
    }

    /// The server case `id` runs against.
    fn server_of(&self, id: &str) -> &Server {
        if id.starts_with("proxy.") {
            self.proxied()
        } else if id.starts_with("region.") {
            self.regional()
        } else {
            &self.server
        }
    }

    /// A user name no other case uses.
    fn user(&self) -> String {
        self.n.set(self.n.get() + 1);
        format!("bad-input-{}", self.n.get())
    }
}

fn cases() -> Vec<(&'static str, Case)> {
    vec![
        // HTTP requests
        ("http.malformed_head", |c| {
            raw(c, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        }),
        ("http.obsolete_line_folding", |c| {
            raw(c, b"GET /health HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n")
        }),
        ("http.head_too_large", |c| {
            let big = format!(
                "GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(9000)
            );
            raw(c, big.as_bytes())
        }),
        ("http.too_many_headers", |c| {
            let mut head = String::from("GET /health HTTP/1.1\r\n");
            for i in 0..70 {
                head.push_str(&format!("X-H{i}: v\r\n"));
            }
            head.push_str("\r\n");
            raw(c, head.as_bytes())
        }),
        ("http.bad_content_length", |c| {
            raw(
                c,
                b"POST /api/publish HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            )
        }),
        ("http.two_content_lengths", |c| {
            raw(
                c,
                b"POST /api/publish HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            )
        }),
        ("http.transfer_encoding", |c| {
            raw(
                c,
                b"POST /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            )
        }),
        ("http.head_timeout", |c| {
            raw(c, b"GET /health HTTP/1.1\r\nHost: x\r\n")
        }),
        ("http.silent_connection", |c| raw(c, b"")),
        ("http.body_timeout", |c| {
            let head = format!(
                "POST /api/publish HTTP/1.1\r\nX-API-Key: {API_KEY}\r\nContent-Length: 100\r\n\r\n{{\"chan"
            );
            raw(c, head.as_bytes())
        }),
        ("http.unknown_path", |c| {
            raw(c, b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
        }),
        ("http.wrong_method", |c| {
            raw(c, b"DELETE /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        }),
        ("http.websocket_path_without_upgrade", |c| {
            raw(
                c,
                b"GET /connection/websocket HTTP/1.1\r\nConnection: close\r\n\r\n",
            )
        }),
        ("http.proxy_header_from_untrusted_peer", |c| {
            let mut bytes = PROXY_SIGNATURE.to_vec();
            bytes.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
            bytes.extend_from_slice(&[127, 0, 0, 9, 127, 0, 0, 1, 0x30, 0x39, 0x1f, 0x40]);
            bytes.extend_from_slice(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
            raw(c, &bytes)
        }),
        // PROXY v2 header from a trusted proxy
        ("proxy.malformed_header", |c| {
            // the signature, then a version/command byte and length that are not v2
            let mut bytes = PROXY_SIGNATURE.to_vec();
            bytes.extend_from_slice(&[0x11, 0x11, 0x00, 0x0c]);
            bytes.extend_from_slice(&[0u8; 12]);
            raw_to(c.proxied(), &bytes)
        }),
        ("proxy.header_timeout", |c| {
            raw_to(c.proxied(), &PROXY_SIGNATURE[..6])
        }),
        // WebSocket handshake
        ("ws.bad_version", |c| {
            upgrade(
                c,
                "/connection/websocket",
                "Sec-WebSocket-Version: 12\r\n",
                true,
            )
        }),
        ("ws.missing_key", |c| {
            upgrade(
                c,
                "/connection/websocket",
                "Sec-WebSocket-Version: 13\r\n",
                false,
            )
        }),
        ("ws.not_get", |c| {
            let req = "POST /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
            raw(c, req.as_bytes())
        }),
        ("ws.unknown_path", |c| {
            upgrade(c, "/nope", "Sec-WebSocket-Version: 13\r\n", true)
        }),
        ("ws.upgrade_with_body", |c| {
            upgrade(
                c,
                "/connection/websocket",
                "Sec-WebSocket-Version: 13\r\nContent-Length: 4\r\n",
                true,
            )
        }),
        ("ws.origin_not_allowed", |c| {
            upgrade(
                c,
                "/connection/websocket",
                "Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n",
                true,
            )
        }),
        // WebSocket frames and messages
        ("frame.unmasked", |c| {
            let mut ws = ws(c);
            ws.write_raw(&[0x81, 0x02, b'{', b'}']);
            observe(&mut ws)
        }),
        ("frame.rsv_bits", |c| {
            let mut ws = ws(c);
            let mut f = masked_frame(0x1, true, b"{}");
            f[0] |= 0x40;
            ws.write_raw(&f);
            observe(&mut ws)
        }),
        ("frame.reserved_opcode", |c| {
            frame_case(c, &[(0x3, true, b"{}")])
        }),
        ("frame.fragmented_control", |c| {
            frame_case(c, &[(0x9, false, b"x")])
        }),
        ("frame.control_too_long", |c| {
            frame_case(c, &[(0x9, true, &[b'p'; 126])])
        }),
        ("frame.stray_continuation", |c| {
            frame_case(c, &[(0x0, true, b"{}")])
        }),
        ("frame.new_message_inside_fragmented", |c| {
            frame_case(c, &[(0x1, false, b"{"), (0x1, true, b"}")])
        }),
        ("frame.too_big", |c| {
            // the header alone announces too much: the server answers before the payload
            let mut ws = ws(c);
            ws.write_raw(&masked_frame(0x1, true, &vec![b' '; MAX_MESSAGE + 1])[..8]);
            observe(&mut ws)
        }),
        ("frame.fragments_too_big", |c| {
            let half = vec![b' '; MAX_MESSAGE / 2 + 1];
            frame_case(c, &[(0x1, false, &half), (0x0, true, &half)])
        }),
        ("frame.invalid_utf8", |c| {
            frame_case(c, &[(0x1, true, b"{\xff}")])
        }),
        ("frame.binary_message", |c| {
            frame_case(c, &[(0x2, true, b"{}")])
        }),
        ("frame.close_code_not_allowed", |c| {
            frame_case(c, &[(0x8, true, &1005u16.to_be_bytes())])
        }),
        ("frame.close_one_byte", |c| {
            frame_case(c, &[(0x8, true, &[0x03])])
        }),
        ("frame.close_reason_not_utf8", |c| {
            frame_case(c, &[(0x8, true, b"\x03\xe8\xff")])
        }),
        // client protocol: JSON and commands
        ("cmd.not_json", |c| text_case(ws(c), "{nope")),
        ("cmd.not_an_object", |c| text_case(ws(c), "[1, 2]")),
        ("cmd.bad_id", |c| {
            text_case(ws(c), r#"{"id": -1, "connect": {}}"#)
        }),
        ("cmd.first_not_connect", |c| {
            text_case(ws(c), r#"{"id": 1, "subscribe": {"channel": "a"}}"#)
        }),
        ("cmd.no_connect_in_time", |c| observe(&mut ws(c))),
        ("cmd.second_connect", |c| {
            let t = good_token(&c.user());
            text_case(
                connected(c),
                &json!({"id": 9, "connect": {"token": t}}).to_string(),
            )
        }),
        ("cmd.missing_id", |c| {
            text_case(connected(c), r#"{"subscribe": {"channel": "a"}}"#)
        }),
        ("cmd.unknown_method", |c| {
            text_case(connected(c), r#"{"id": 9, "frobnicate": {}}"#)
        }),
        ("cmd.publish_without_data", |c| {
            text_case(connected(c), r#"{"id": 9, "publish": {"channel": "a"}}"#)
        }),
        ("cmd.empty_channel", |c| subscribe(c, "")),
        ("cmd.channel_too_long", |c| subscribe(c, &"c".repeat(256))),
        ("cmd.unknown_namespace", |c| subscribe(c, "nope:x")),
        ("cmd.private_channel_without_token", |c| {
            subscribe(c, "$doc")
        }),
        ("cmd.already_subscribed", |c| {
            let mut ws = connected(c);
            send(&mut ws, r#"{"id": 8, "subscribe": {"channel": "twice"}}"#);
            assert!(observe(&mut ws) == Answer::Accepted("subscribe".into()));
            text_case(ws, r#"{"id": 9, "subscribe": {"channel": "twice"}}"#)
        }),
        ("cmd.history_not_available", |c| {
            let mut ws = connected(c);
            send(
                &mut ws,
                r#"{"id": 8, "subscribe": {"channel": "nohistory"}}"#,
            );
            assert!(observe(&mut ws) == Answer::Accepted("subscribe".into()));
            text_case(ws, r#"{"id": 9, "history": {"channel": "nohistory"}}"#)
        }),
        ("cmd.publication_too_large", |c| {
            let data = "x".repeat(64);
            let cmd = json!({"id": 9, "publish": {"channel": "small:x", "data": data}});
            text_case(connected(c), &cmd.to_string())
        }),
        ("cmd.too_many_connections_of_one_user", |c| {
            let user = c.user();
            let mut open: Vec<RawWs> = Vec::new();
            for _ in 0..USER_CONNECTIONS {
                let mut ws = ws(c);
                send(
                    &mut ws,
                    &json!({"id": 1, "connect": {"token": good_token(&user)}}).to_string(),
                );
                assert_eq!(observe(&mut ws), Answer::Accepted("connect".into()));
                open.push(ws);
            }
            connect_with(c, &good_token(&user))
        }),
        ("cmd.too_many_subscriptions", |c| {
            let mut ws = connected(c);
            for i in 0..MAX_SUBSCRIPTIONS {
                let cmd = json!({"id": 10 + i, "subscribe": {"channel": format!("many{i}")}});
                send(&mut ws, &cmd.to_string());
                assert_eq!(observe(&mut ws), Answer::Accepted("subscribe".into()));
            }
            subscribe_on(ws, "one-too-many")
        }),
        ("cmd.publish_not_allowed", |c| {
            let cmd = json!({"id": 9, "publish": {"channel": "readonly:x", "data": {}}});
            text_case(connected(c), &cmd.to_string())
        }),
        ("cmd.user_limited_channel_of_others", |c| {
            subscribe(c, "dm:chat#someone,else")
        }),
        ("cmd.presence_not_available", |c| {
            let mut ws = connected(c);
            send(
                &mut ws,
                r#"{"id": 8, "subscribe": {"channel": "nopresence"}}"#,
            );
            assert!(observe(&mut ws) == Answer::Accepted("subscribe".into()));
            text_case(ws, r#"{"id": 9, "presence": {"channel": "nopresence"}}"#)
        }),
        ("cmd.history_from_lost_position", |c| {
            let mut ws = connected(c);
            send(&mut ws, r#"{"id": 8, "subscribe": {"channel": "hist:x"}}"#);
            assert!(observe(&mut ws) == Answer::Accepted("subscribe".into()));
            let cmd = r#"{"id": 9, "history": {"channel": "hist:x", "since": {"offset": 7, "epoch": "gone"}}}"#;
            text_case(ws, cmd)
        }),
        ("cmd.rpc", |c| {
            text_case(connected(c), r#"{"id": 9, "rpc": {"method": "m"}}"#)
        }),
        ("cmd.rate_limited", |c| {
            // the connect took one token; a batch of BURST + 5 more runs the bucket dry even
            // when a few seconds refilled it, and refuses fewer than BURST in a row (no 3013)
            let mut ws = connected(c);
            let batch: Vec<String> = (0..BURST + 5)
                .map(|i| json!({"id": 10 + i, "unsubscribe": {"channel": "r"}}).to_string())
                .collect();
            send(&mut ws, &batch.join("\n"));
            first_error(&mut ws)
        }),
        ("cmd.rate_limit_ignored", |c| {
            let mut ws = connected(c);
            let batch: Vec<String> = (0..3 * BURST)
                .map(|i| json!({"id": 10 + i, "unsubscribe": {"channel": "r"}}).to_string())
                .collect();
            send(&mut ws, &batch.join("\n"));
            wait_close(&mut ws)
        }),
        // tokens: connection tokens
        ("token.missing", |c| connect_with(c, "")),
        ("token.malformed", |c| connect_with(c, "not.a.jwt")),
        ("token.bad_signature", |c| {
            let claims = claims(&c.user());
            connect_with(
                c,
                &hmac_token(&claims, b"some-other-secret-0123456789abcdef"),
            )
        }),
        ("token.expired", |c| {
            let claims = with(claims(&c.user()), json!({"exp": now_s() - 60}));
            connect_with(c, &hs256(&claims))
        }),
        ("token.alg_none", |c| {
            let claims = claims(&c.user());
            connect_with(
                c,
                &unsigned(json!({"alg": "none", "typ": "JWT"}), &claims, ""),
            )
        }),
        ("token.alg_not_allowed", |c| {
            let claims = claims(&c.user());
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            let t = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &key).unwrap();
            connect_with(c, &t)
        }),
        ("token.rs256_signed_with_hmac_secret", |c| {
            // algorithm confusion: the header says RS256, the signature is HMAC with the secret
            let claims = claims(&c.user());
            let header = json!({"alg": "RS256", "typ": "JWT"});
            let body = format!("{}.{}", b64(&header), b64(&claims));
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            let sig = jsonwebtoken::crypto::sign(body.as_bytes(), &key, Algorithm::HS256).unwrap();
            connect_with(c, &format!("{body}.{sig}"))
        }),
        ("token.hs256_signed_with_public_key", |c| {
            // algorithm confusion the other way: HMAC keyed with the server's RSA public key
            let pem = std::fs::read(key_path("rsa-a.pub.pem")).unwrap();
            connect_with(c, &hmac_token(&claims(&c.user()), &pem))
        }),
        ("token.unknown_kid", |c| {
            // HMAC secrets have no id: a kid selects among the public keys
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some("no-such-key".into());
            let pem = std::fs::read(key_path("rsa-a.key.pem")).unwrap();
            let key = EncodingKey::from_rsa_pem(&pem).unwrap();
            let t = jsonwebtoken::encode(&header, &claims(&c.user()), &key).unwrap();
            connect_with(c, &t)
        }),
        ("token.wrong_audience", |c| {
            let claims = with(claims(&c.user()), json!({"aud": "someone-else"}));
            connect_with(c, &hs256(&claims))
        }),
        ("token.missing_audience", |c| {
            let mut claims = claims(&c.user());
            claims.as_object_mut().unwrap().remove("aud");
            connect_with(c, &hs256(&claims))
        }),
        ("token.wrong_issuer", |c| {
            let claims = with(claims(&c.user()), json!({"iss": "someone-else"}));
            connect_with(c, &hs256(&claims))
        }),
        ("token.not_yet_valid", |c| {
            let claims = with(claims(&c.user()), json!({"nbf": now_s() + 600}));
            connect_with(c, &hs256(&claims))
        }),
        ("token.issued_in_future", |c| {
            let claims = with(claims(&c.user()), json!({"iat": now_s() + 600}));
            connect_with(c, &hs256(&claims))
        }),
        ("token.subscription_token_to_connect", |c| {
            let claims = with(claims(&c.user()), json!({"channel": "$doc"}));
            connect_with(c, &hs256(&claims))
        }),
        ("token.revoked", |c| {
            let jti = format!("jti-{}", c.user());
            let (status, _) = c.server.api("revoke_token", json!({"uid": jti}));
            assert_eq!(status, 200);
            let claims = with(claims(&c.user()), json!({"jti": jti}));
            connect_with(c, &hs256(&claims))
        }),
        ("token.user_invalidated", |c| {
            let user = c.user();
            let claims = with(claims(&user), json!({"iat": now_s() - 10}));
            let (status, _) = c
                .server
                .api("invalidate_user_tokens", json!({"user": user}));
            assert_eq!(status, 200);
            connect_with(c, &hs256(&claims))
        }),
        ("token.refresh_expired", |c| {
            let (mut ws, user) = connected_as(c);
            let claims = with(claims(&user), json!({"exp": now_s() - 60}));
            let cmd = json!({"id": 9, "refresh": {"token": hs256(&claims)}});
            text_case_ws(&mut ws, &cmd.to_string())
        }),
        ("token.refresh_other_user", |c| {
            let mut ws = connected(c);
            let cmd = json!({"id": 9, "refresh": {"token": good_token(&c.user())}});
            text_case_ws(&mut ws, &cmd.to_string())
        }),
        // tokens: subscription tokens
        ("subtoken.bad_signature", |c| {
            sub_token_case(c, "$doc", |user| {
                hmac_token(
                    &sub_claims(user, "$doc"),
                    b"some-other-secret-0123456789abcdef",
                )
            })
        }),
        ("subtoken.expired", |c| {
            sub_token_case(c, "$doc", |user| {
                hs256(&with(
                    sub_claims(user, "$doc"),
                    json!({"exp": now_s() - 60}),
                ))
            })
        }),
        ("subtoken.alg_none", |c| {
            sub_token_case(c, "$doc", |user| {
                unsigned(json!({"alg": "none"}), &sub_claims(user, "$doc"), "")
            })
        }),
        ("subtoken.other_channel", |c| {
            sub_token_case(c, "$doc", |user| hs256(&sub_claims(user, "$other")))
        }),
        ("subtoken.other_user", |c| {
            sub_token_case(c, "$doc", |_| hs256(&sub_claims("someone-else", "$doc")))
        }),
        ("subtoken.no_channel_claim", |c| {
            sub_token_case(c, "$doc", |user| hs256(&claims(user)))
        }),
        ("subtoken.wrong_audience", |c| {
            sub_token_case(c, "$doc", |user| {
                hs256(&with(
                    sub_claims(user, "$doc"),
                    json!({"aud": "someone-else"}),
                ))
            })
        }),
        ("subtoken.revoked", |c| {
            let jti = format!("jti-{}", c.user());
            let (status, _) = c.server.api("revoke_token", json!({"uid": jti}));
            assert_eq!(status, 200);
            sub_token_case(c, "$doc", move |user| {
                hs256(&with(sub_claims(user, "$doc"), json!({"jti": jti})))
            })
        }),
        ("subtoken.refresh_expired", |c| {
            let (mut ws, user) = connected_as(c);
            let ok = hs256(&sub_claims(&user, "$doc"));
            send(
                &mut ws,
                &json!({"id": 8, "subscribe": {"channel": "$doc", "token": ok}}).to_string(),
            );
            assert!(observe(&mut ws) == Answer::Accepted("subscribe".into()));
            let old = hs256(&with(
                sub_claims(&user, "$doc"),
                json!({"exp": now_s() - 60}),
            ));
            let cmd = json!({"id": 9, "sub_refresh": {"channel": "$doc", "token": old}});
            text_case_ws(&mut ws, &cmd.to_string())
        }),
        // regions (document pinning)
        ("region.discovery_without_token", |c| {
            raw_to(c.regional(), &discovery("docs%3Aa", ""))
        }),
        ("region.discovery_bad_token", |c| {
            raw_to(c.regional(), &discovery("docs%3Aa", "Bearer nope"))
        }),
        ("region.discovery_without_document", |c| {
            let auth = format!("Bearer {}", region_token(c, json!({})));
            let req = format!(
                "GET /discovery HTTP/1.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
            );
            raw_to(c.regional(), req.as_bytes())
        }),
        ("region.discovery_not_a_document", |c| {
            let auth = format!("Bearer {}", region_token(c, json!({})));
            raw_to(c.regional(), &discovery("plain", &auth))
        }),
        ("region.discovery_bad_encoding", |c| {
            let auth = format!("Bearer {}", region_token(c, json!({})));
            raw_to(c.regional(), &discovery("docs%3Aa%zz", &auth))
        }),
        ("region.discovery_unknown_db_code", |c| {
            let auth = format!("Bearer {}", region_token(c, json!({"dbCode": "nope"})));
            raw_to(c.regional(), &discovery("docs%3Aa", &auth))
        }),
        ("region.discovery_pin_redis_down", |c| {
            let auth = format!("Bearer {}", region_token(c, json!({})));
            raw_to(c.regional(), &discovery("docs%3Aa", &auth))
        }),
        ("region.document_path_malformed", |c| {
            let req = "GET /connection/websocket/docs%3A%zz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
            raw_to(c.regional(), req.as_bytes())
        }),
        ("ws.document_path_without_regions", |c| {
            let req = "GET /connection/websocket/docs%3Aa HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
            raw_to(&c.server, req.as_bytes())
        }),
        ("region.document_url_not_a_document", |c| {
            region_connect(c, "/connection/websocket/plain", json!({}))
        }),
        ("region.document_url_pin_redis_down", |c| {
            region_connect(c, "/connection/websocket/docs%3Aa", json!({}))
        }),
        ("region.subscribe_pin_redis_down", |c| {
            let mut ws = RawWs::open(c.regional(), "/connection/websocket");
            send(
                &mut ws,
                &json!({"id": 1, "connect": {"token": region_token(c, json!({}))}}).to_string(),
            );
            assert_eq!(observe(&mut ws), Answer::Accepted("connect".into()));
            text_case(
                ws,
                &json!({"id": 9, "subscribe": {"channel": "docs:a"}}).to_string(),
            )
        }),
        ("region.subscribe_unknown_db_code", |c| {
            let mut ws = RawWs::open(c.regional(), "/connection/websocket");
            let token = region_token(c, json!({"dbCode": "nope"}));
            send(
                &mut ws,
                &json!({"id": 1, "connect": {"token": token}}).to_string(),
            );
            assert_eq!(observe(&mut ws), Answer::Accepted("connect".into()));
            text_case(
                ws,
                &json!({"id": 9, "subscribe": {"channel": "docs:a"}}).to_string(),
            )
        }),
        // server API
        ("api.no_key", |c| {
            api(c, "/api/publish", None, r#"{"channel": "a", "data": 1}"#)
        }),
        ("api.wrong_key", |c| {
            api(
                c,
                "/api/publish",
                Some("wrong-key"),
                r#"{"channel": "a", "data": 1}"#,
            )
        }),
        ("api.unknown_method", |c| {
            api(c, "/api/frobnicate", Some(API_KEY), "{}")
        }),
        ("api.wrong_http_method", |c| {
            raw(c, b"GET /api/publish HTTP/1.1\r\nConnection: close\r\n\r\n")
        }),
        ("api.bad_json", |c| {
            api(c, "/api/publish", Some(API_KEY), "{nope")
        }),
        ("api.publish_without_data", |c| {
            api(c, "/api/publish", Some(API_KEY), r#"{"channel": "a"}"#)
        }),
        ("api.publish_without_channel", |c| {
            api(c, "/api/publish", Some(API_KEY), r#"{"data": 1}"#)
        }),
        ("api.publish_bad_tags", |c| {
            api(
                c,
                "/api/publish",
                Some(API_KEY),
                r#"{"channel": "a", "data": 1, "tags": {"k": 1}}"#,
            )
        }),
        ("api.publish_unknown_namespace", |c| {
            api(
                c,
                "/api/publish",
                Some(API_KEY),
                r#"{"channel": "nope:a", "data": 1}"#,
            )
        }),
        ("api.publication_too_large", |c| {
            let body = json!({"channel": "small:a", "data": "x".repeat(64)}).to_string();
            api(c, "/api/publish", Some(API_KEY), &body)
        }),
        ("api.revoke_without_uid", |c| {
            api(c, "/api/revoke_token", Some(API_KEY), "{}")
        }),
        ("api.invalidate_without_user", |c| {
            api(
                c,
                "/api/invalidate_user_tokens",
                Some(API_KEY),
                r#"{"user": 5}"#,
            )
        }),
        ("api.connections_bad_limit", |c| {
            api(c, "/api/connections", Some(API_KEY), r#"{"limit": -1}"#)
        }),
        ("api.connections_bad_user", |c| {
            api(c, "/api/connections", Some(API_KEY), r#"{"user": 5}"#)
        }),
        ("api.connections_expression", |c| {
            api(
                c,
                "/api/connections",
                Some(API_KEY),
                r#"{"expression": "user == 'a'"}"#,
            )
        }),
        ("api.connections_unknown_field", |c| {
            api(c, "/api/connections", Some(API_KEY), r#"{"users": ["a"]}"#)
        }),
        ("api.batch_malformed", |c| {
            api(
                c,
                "/api/batch",
                Some(API_KEY),
                r#"{"commands": [{"info": {}, "channels": {}}]}"#,
            )
        }),
        ("api.batch_unknown_method", |c| {
            api(
                c,
                "/api/batch",
                Some(API_KEY),
                r#"{"commands": [{"batch": {"commands": []}}]}"#,
            )
        }),
        ("api.batch_too_many", |c| {
            let body = json!({"commands": vec![json!({"info": {}}); MAX_BATCH + 1]}).to_string();
            api(c, "/api/batch", Some(API_KEY), &body)
        }),
        ("api.body_too_large", |c| {
            let body = json!({"channel": "a", "data": "x".repeat(MAX_BODY)}).to_string();
            api(c, "/api/publish", Some(API_KEY), &body)
        }),
        ("api.no_content_length", |c| {
            let head = format!(
                "POST /api/publish HTTP/1.1\r\nX-API-Key: {API_KEY}\r\nConnection: close\r\n\r\n"
            );
            raw(c, head.as_bytes())
        }),
        ("api.transfer_encoding", |c| {
            let req = format!(
                "POST /api/publish HTTP/1.1\r\nX-API-Key: {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            );
            raw(c, req.as_bytes())
        }),
    ]
}

// ---------------------------------------------------------------------------------------
// HTTP

/// The first 12 bytes of every PROXY v2 header.
const PROXY_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Sends raw bytes on a fresh connection, reads until the server closes.
fn raw(c: &Ctx, bytes: &[u8]) -> Answer {
    raw_to(&c.server, bytes)
}

/// `GET /discovery?documentName=<doc>` with an `Authorization` header unless `auth` is empty.
fn discovery(doc: &str, auth: &str) -> Vec<u8> {
    let auth = if auth.is_empty() {
        String::new()
    } else {
        format!("Authorization: {auth}\r\n")
    };
    format!("GET /discovery?documentName={doc} HTTP/1.1\r\n{auth}Connection: close\r\n\r\n")
        .into_bytes()
}

/// A connection token for the regions server (no audience or issuer there) with `extra` claims.
fn region_token(c: &Ctx, extra: Value) -> String {
    let mut claims = json!({"sub": c.user(), "exp": now_s() + 3600});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            claims[k] = v;
        }
    }
    hs256(&claims)
}

/// A WebSocket on `path` of the regions server, then `connect`: what it answers (a close).
fn region_connect(c: &Ctx, path: &str, extra: Value) -> Answer {
    let mut ws = RawWs::open(c.regional(), path);
    let token = region_token(c, extra);
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": token}}).to_string(),
    );
    wait_close(&mut ws)
}

fn raw_to(server: &Server, bytes: &[u8]) -> Answer {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    http_answer(&got)
}

fn http_answer(raw: &[u8]) -> Answer {
    if raw.is_empty() {
        return Answer::Silent;
    }
    let (status, body) = common::parse_http_response(raw);
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["code"].as_u64());
    Answer::Http(status, code)
}

fn upgrade(c: &Ctx, path: &str, extra: &str, key: bool) -> Answer {
    let key = if key {
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}{extra}\r\n"
    );
    raw(c, req.as_bytes())
}

/// `POST` with a JSON body and the given API key.
fn api(c: &Ctx, path: &str, key: Option<&str>, body: &str) -> Answer {
    let headers: Vec<(&str, &str)> = key.map(|k| ("X-API-Key", k)).into_iter().collect();
    let (status, body) = http(c.server.addr, "POST", path, &headers, body);
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["code"].as_u64());
    Answer::Http(status, code)
}

// ---------------------------------------------------------------------------------------
// WebSocket

fn ws(c: &Ctx) -> RawWs {
    RawWs::open(&c.server, "/connection/websocket")
}

fn send(ws: &mut RawWs, text: &str) {
    ws.frame(0x1, true, text.as_bytes());
}

/// The first reply (its error code, or `Accepted(method)`) or the close code; pushes are
/// skipped.
fn observe(ws: &mut RawWs) -> Answer {
    loop {
        match ws.read_frame() {
            None => return Answer::Silent,
            Some((8, p)) if p.len() >= 2 => return Answer::Close(u16::from_be_bytes([p[0], p[1]])),
            Some((8, _)) => return Answer::Close(1005),
            Some((1, p)) => {
                for line in String::from_utf8_lossy(&p).lines() {
                    let v: Value = serde_json::from_str(line).unwrap();
                    if v.get("id").is_none() {
                        continue;
                    }
                    if let Some(code) = v["error"]["code"].as_u64() {
                        return Answer::Error(code);
                    }
                    let method = v.as_object().unwrap().keys().find(|k| *k != "id");
                    return Answer::Accepted(method.cloned().unwrap_or_default());
                }
            }
            Some(_) => {}
        }
    }
}

/// The first error reply among many (a frame may carry several replies), or the close code.
fn first_error(ws: &mut RawWs) -> Answer {
    loop {
        match ws.read_frame() {
            None => return Answer::Silent,
            Some((8, p)) if p.len() >= 2 => return Answer::Close(u16::from_be_bytes([p[0], p[1]])),
            Some((1, p)) => {
                for line in String::from_utf8_lossy(&p).lines() {
                    let v: Value = serde_json::from_str(line).unwrap();
                    if let Some(code) = v["error"]["code"].as_u64() {
                        return Answer::Error(code);
                    }
                }
            }
            Some(_) => {}
        }
    }
}

/// The close code, whatever replies come first.
fn wait_close(ws: &mut RawWs) -> Answer {
    loop {
        match observe(ws) {
            Answer::Accepted(_) | Answer::Error(_) => continue,
            other => return other,
        }
    }
}

fn frame_case(c: &Ctx, frames: &[(u8, bool, &[u8])]) -> Answer {
    let mut ws = ws(c);
    for (op, fin, payload) in frames {
        ws.frame(*op, *fin, payload);
    }
    observe(&mut ws)
}

fn text_case(mut ws: RawWs, text: &str) -> Answer {
    text_case_ws(&mut ws, text)
}

fn text_case_ws(ws: &mut RawWs, text: &str) -> Answer {
    send(ws, text);
    observe(ws)
}

/// A raw WebSocket past a successful `connect`.
fn connected(c: &Ctx) -> RawWs {
    connected_as(c).0
}

fn connected_as(c: &Ctx) -> (RawWs, String) {
    let user = c.user();
    let mut ws = ws(c);
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": good_token(&user)}}).to_string(),
    );
    let got = observe(&mut ws);
    assert_eq!(got, Answer::Accepted("connect".into()), "connect as {user}");
    (ws, user)
}

fn subscribe(c: &Ctx, channel: &str) -> Answer {
    subscribe_on(connected(c), channel)
}

fn subscribe_on(ws: RawWs, channel: &str) -> Answer {
    let cmd = json!({"id": 9, "subscribe": {"channel": channel}});
    text_case(ws, &cmd.to_string())
}

fn connect_with(c: &Ctx, token: &str) -> Answer {
    text_case(
        ws(c),
        &json!({"id": 1, "connect": {"token": token}}).to_string(),
    )
}

/// Subscribes to `channel` with the token `make(user)` of a fresh connected user.
fn sub_token_case(c: &Ctx, channel: &str, make: impl FnOnce(&str) -> String) -> Answer {
    let (ws, user) = connected_as(c);
    let cmd = json!({"id": 9, "subscribe": {"channel": channel, "token": make(&user)}});
    text_case(ws, &cmd.to_string())
}

// ---------------------------------------------------------------------------------------
// tokens

fn claims(user: &str) -> Value {
    json!({"sub": user, "exp": now_s() + 600, "iat": now_s(), "aud": AUD, "iss": ISS})
}

fn sub_claims(user: &str, channel: &str) -> Value {
    with(claims(user), json!({ "channel": channel }))
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn hs256(claims: &Value) -> String {
    hmac_token(claims, SECRET.as_bytes())
}

fn hmac_token(claims: &Value, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn good_token(user: &str) -> String {
    hs256(&claims(user))
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn unsigned(header: Value, claims: &Value, sig: &str) -> String {
    format!("{}.{}.{sig}", b64(&header), b64(claims))
}
