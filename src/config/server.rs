//! The `[server]` section: the listener, connection admission and limits, HTTP
//! guards, drain, and the edge limits (origins, per-address and per-user caps,
//! rates, trusted proxies, the internal listener).
//!
//! Declared with `config_section!` (see `config.rs`), so its docs, defaults,
//! example and environment typing come from this one place; checked in
//! `validate.rs`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{string_or_list, CoresSpec, FieldDoc};

config_section! {
    /// Listener, connection limits and HTTP guards of this node.
    pub struct ServerConfig {
        /// Address and port to listen on for WebSocket and HTTP. Default: `127.0.0.1:8000`.
        /// Set `0.0.0.0:<port>` (or a specific interface) to accept remote clients.
        pub listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8000)),
        /// CPUs to run executors on: "all", a count N (first N usable CPUs) or a list of CPU
        /// ids such as [0, 2]. Default: `"all"`. Restrict it to leave CPUs to a co-located
        /// Redis or to the NIC's interrupt handlers.
        pub cores: CoresSpec = CoresSpec::All,
        /// How long `serve` waits for another listener on its port to go away before it
        /// refuses to start (one server per port; `--takeover` shares it on purpose). A
        /// predecessor that just exited can hold its listening sockets a moment longer
        /// while the kernel tears down its io_uring, so a restart on the same port waits
        /// instead of failing. Default: `3_000` ms.
        pub port_wait_ms: u64 = 3_000,
        /// Listen backlog per core (capped by net.core.somaxconn). Default: `4096`.
        /// Raise it when many clients reconnect at once after a deploy.
        pub backlog: u32 = 4096,
        /// Maximum connected clients (past the protocol `connect`) on this node; beyond it
        /// upgrades are refused with HTTP 503 and `/health` answers 503 "shedding".
        /// Default: `100_000`. Size it to memory and the nofile limit.
        pub max_connections: usize = 100_000,
        /// Connections per core that are accepted but not yet connected (reading an HTTP
        /// request, or upgraded without a `connect` yet); beyond it new accepts get HTTP 503
        /// with Retry-After and are closed. They do not count toward `max_connections`.
        /// Default: `10_000`. Lower it to bound the memory idle sockets can hold during a
        /// flood; raise it only if legitimate reconnect storms exceed it per core.
        pub max_pending_connections_per_core: usize = 10_000,
        /// One deadline for a whole HTTP request head, from the first byte awaited to the
        /// blank line (slowloris guard: a partial head then gets 408); it also bounds the
        /// keep-alive idle time between requests and the time an upgraded WebSocket has to
        /// send `connect` (else 3502). Default: `10_000` ms. Lower it under attack.
        pub header_timeout_ms: u64 = 10_000,
        /// One deadline for a whole HTTP request body (server API), after its head; a body
        /// still incomplete then gets 408 and the connection is closed. Default: `10_000` ms.
        /// Raise it for very large `batch` calls over slow links.
        pub body_timeout_ms: u64 = 10_000,
        /// Largest accepted HTTP request head; beyond it the reply is HTTP 431.
        /// Default: `8192` bytes. Raise it only if proxies add very large headers or cookies.
        pub max_header_bytes: usize = 8192,
        /// Largest accepted HTTP request body (server API); beyond it the reply is HTTP 413.
        /// Default: `1_048_576` bytes. Raise it for large `batch` API calls.
        pub max_body_bytes: usize = 1_048_576,
        /// On SIGTERM, client disconnects (code 3001) are spread over this window so clients
        /// do not reconnect elsewhere all at once. Default: `10_000` ms. Keep it below the
        /// supervisor's stop timeout.
        pub drain_window_ms: u64 = 10_000,
        /// On SIGTERM the node leaves the pool at once (`/health` 503 "draining", upgrades
        /// 503 + Retry-After) and waits this long before its first disconnect, so that load
        /// balancers and health-checked DNS records take it out before its clients reconnect:
        /// keep it at least check interval × fall (+ the DNS TTL for DNS pools, see
        /// docs/POOLS.md). Skipped when a successor process took the port over
        /// (`--takeover`). Default: `4_000` ms (2× HAProxy's default 2 s check interval).
        pub drain_leave_pool_ms: u64 = 4_000,
        /// After `drain_leave_pool_ms`, the sessions get their 3001 in this many batches (fewer
        /// when there are fewer sessions), spread evenly over `drain_window_ms`: the first at
        /// once, then one every `drain_window_ms / drain_batches`. Every core splits its own
        /// sessions so, and the cores' batches go out together. Default: `20` (a batch every
        /// 500 ms with the default window). Raise it for a smoother reconnect rate on the
        /// other nodes; `wiresocket_drain_batches_total` counts the batches sent.
        pub drain_batches: usize = 20,
        /// Lower bound of the jittered Retry-After sent with HTTP 503 when refusing load.
        /// Default: `1` s.
        pub retry_after_min_s: u32 = 1,
        /// Upper bound of the jittered Retry-After sent with HTTP 503. Default: `10` s.
        /// Widen the range to spread reconnect storms over more time.
        pub retry_after_max_s: u32 = 10,
        /// Enables the `GET /echo` WebSocket echo endpoint for RFC 6455 conformance suites.
        /// Default: `false`. Leave off in production.
        pub conformance_echo: bool = false,
        /// io_uring submission entries per executor ring (completion rings get twice as many).
        /// Default: `4096`. The kernel sizes its table of armed polls from the ring: at 128
        /// entries it has 8 buckets, and every cancellation glommio issues (two per reactor
        /// turn, re-arming its preemption timers) walked ~600 polls per bucket at 10,000
        /// connections. 4096 gives the maximum 256 buckets: measured with `bench/compare.sh
        /// ONLY=many-channels,idle-hold`, server CPU at 1,000 publications/s fell from 42% to
        /// 24% of a core and idle CPU from 1.6% to 0.7%, for ~3 MB more per core. On kernels
        /// before 5.12 ring memory counts against RLIMIT_MEMLOCK.
        pub ring_depth: usize = 4096,
        /// This node's name, reported to clients as `node` in the connect result and used
        /// in logs. Default: unset, which means `<hostname>:<port>`.
        pub node_name: Option<String> = None,
        /// Browser origins allowed to open WebSockets, besides the same origin: exact
        /// (`https://app.example.com`) or with one `*` (`https://*.example.com`); `["*"]`
        /// allows every origin. An upgrade whose `Origin` matches neither the list nor its
        /// own `Host` is refused with HTTP 403 (cross-site WebSocket hijacking guard);
        /// clients that send no `Origin` (SDKs outside browsers) are not affected.
        /// Default: `[]` (same origin only). List the sites that embed your frontend.
        #[serde(deserialize_with = "string_or_list")]
        pub allowed_origins: Vec<String> = Vec::new(),
        /// Peers (CIDR blocks or addresses) trusted to name the client: from them, a PROXY
        /// protocol v2 header and the `X-Forwarded-For` of an upgrade are believed, and the
        /// per-address limits apply to the client they name. From anyone else both are
        /// ignored (a PROXY header is then a bad request). Default: `[]`. Set it to your
        /// HAProxy/nginx/load balancer addresses, never to client networks.
        #[serde(deserialize_with = "string_or_list")]
        pub trusted_proxies: Vec<String> = Vec::new(),
        /// Client addresses (CIDR blocks) the per-address and per-prefix limits do not
        /// count. Default: `["127.0.0.0/8", "::1/128"]`: local tools, and a local proxy not
        /// listed in `trusted_proxies` (whose clients would otherwise share one address).
        /// Set `[]` to limit loopback clients too.
        #[serde(deserialize_with = "string_or_list")]
        pub limits_exempt: Vec<String> = vec!["127.0.0.0/8".into(), "::1/128".into()],
        /// Open connections (HTTP or WebSocket, pending or connected) one client address may
        /// hold on this node; beyond it new ones get HTTP 429 + Retry-After before anything
        /// is read (`wiresocket_limit_refused_total{reason="ip_connections"}`). `0`: no cap.
        /// Default: `1_000` (a large NAT or office). Lower it when clients are individuals.
        pub max_connections_per_ip: u32 = 1_000,
        /// Open connections one network prefix (/24 for IPv4, /64 for IPv6) may hold; beyond
        /// it 429 + Retry-After (`reason="prefix_connections"`). `0`: no cap.
        /// Default: `10_000`.
        pub max_connections_per_prefix: u32 = 10_000,
        /// Connection attempts per second one client address may make on average (token
        /// bucket); beyond it 429 + Retry-After (`reason="ip_rate"`). `0`: no limit.
        /// Default: `20`.
        pub connect_rate_per_ip: u32 = 20,
        /// Connection attempts one client address may make at once (the bucket size), so a
        /// NAT's users reconnecting together after a restart get through. Default: `500`.
        pub connect_burst_per_ip: u32 = 500,
        /// Connection attempts per second the whole node accepts on average; beyond it HTTP
        /// 503 + Retry-After (`reason="node_rate"`). `0`: no limit. Default: `5_000`.
        pub connect_rate_per_node: u32 = 5_000,
        /// Connection attempts the node accepts at once (the bucket size). Default:
        /// `100_000`, enough for every client of a full node to reconnect at once; raise it
        /// with `max_connections`.
        pub connect_burst_per_node: u32 = 100_000,
        /// Connections one user (token `sub`) may hold on this node; the next `connect` is
        /// answered with disconnect 3504 "connection limit" (`reason="user_connections"`).
        /// Anonymous connections are not counted. `0`: no limit. Default: `0`.
        pub max_connections_per_user: u32 = 0,
        /// Client `publish` commands per second one user may make on average, node-wide
        /// (anonymous clients: per connection); beyond it error 111, and after
        /// `publish_burst_per_user` refusals in a row disconnect 3013 (`reason="publish_user"`).
        /// `0`: no limit. Default: `0`.
        pub publish_rate_per_user: u32 = 0,
        /// Publishes one user may make at once (bucket size); also the refusals in a row
        /// before 3013. Default: `100`.
        pub publish_burst_per_user: u32 = 100,
        /// Client `publish` commands per second into one channel, node-wide; beyond it error
        /// 111 (`reason="publish_channel"`). `0`: no limit. Default: `0`.
        pub publish_rate_per_channel: u32 = 0,
        /// Publishes into one channel at once (bucket size). Default: `1_000`.
        pub publish_burst_per_channel: u32 = 1_000,
        /// Counters per table of the limits above (fixed memory, about 16 bytes per counter
        /// for the address tables; addresses hash into them, so rotating addresses grow
        /// nothing). Default: `65_536`. Raise it past ~200,000 distinct concurrent clients.
        pub limits_table_size: usize = 65_536,
        /// Address of an internal listener serving `/metrics`, `/api/*`, `/health` and the
        /// liveness check `/livez` (as Centrifugo's internal port). When set, the public
        /// listener answers 404 to `/metrics` and `/api/*` and keeps `/health` for load
        /// balancers. Default: unset (everything on `listen`). Set `127.0.0.1:9000` or a
        /// private interface.
        pub internal_listen: Option<SocketAddr> = None,
        /// TLS on the public listener: the `[server.tls]` table (its keys are listed
        /// there). Default: off (plain `ws://`).
        pub tls: TlsConfig = TlsConfig::default(),
    }
}

config_section! {
    /// TLS (`wss://`, `https://`) on the public listener, terminated by rustls on each core.
    /// Set both `cert` and `key` to turn it on; the internal listener stays plain. SIGHUP
    /// reloads both files without dropping connections (a bad new pair keeps the old one).
    pub struct TlsConfig {
        /// PEM file with the certificate chain, leaf first (what an ACME client writes as
        /// `fullchain.pem`). Default: unset (no TLS).
        pub cert: Option<std::path::PathBuf> = None,
        /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC; `privkey.pem`).
        /// Default: unset.
        pub key: Option<std::path::PathBuf> = None,
        /// Deadline of the TLS handshake, from accept; a client that does not finish it in
        /// time is dropped (`wiresocket_tls_handshake_failures_total{reason="timeout"}`).
        /// Default: `5_000` ms.
        pub handshake_timeout_ms: u64 = 5_000,
    }
}
