//! Prometheus text format (version 0.0.4) for the per-core metrics.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::CoreMetrics;
use crate::ws::close::Disconnect;

type Getter = fn(&CoreMetrics) -> i128;

const SIMPLE: &[(&str, &str, &str, Getter)] = &[
    (
        "wiresocket_connections",
        "gauge",
        "Open WebSocket connections.",
        |m| m.connections.load(Relaxed) as i128,
    ),
    (
        "wiresocket_connections_accepted_total",
        "counter",
        "WebSocket connections accepted.",
        |m| m.accepted.load(Relaxed) as i128,
    ),
    (
        "wiresocket_connections_refused_total",
        "counter",
        "Upgrades refused with 503 (connection limit or draining).",
        |m| m.refused.load(Relaxed) as i128,
    ),
    (
        "wiresocket_subscriptions",
        "gauge",
        "Client subscriptions held on this core.",
        |m| m.subscriptions.load(Relaxed) as i128,
    ),
    (
        "wiresocket_channels",
        "gauge",
        "Channels with at least one subscriber on this core.",
        |m| m.channels.load(Relaxed) as i128,
    ),
    (
        "wiresocket_messages_in_total",
        "counter",
        "WebSocket messages received from clients.",
        |m| m.messages_in.load(Relaxed) as i128,
    ),
    (
        "wiresocket_bytes_in_total",
        "counter",
        "Bytes received on WebSocket connections.",
        |m| m.bytes_in.load(Relaxed) as i128,
    ),
    (
        "wiresocket_messages_out_total",
        "counter",
        "WebSocket data frames queued to clients (replies, publications, heartbeats).",
        |m| m.messages_out.load(Relaxed) as i128,
    ),
    (
        "wiresocket_bytes_out_total",
        "counter",
        "Bytes written to WebSocket connections.",
        |m| m.bytes_out.load(Relaxed) as i128,
    ),
    (
        "wiresocket_slow_consumer_disconnects_total",
        "counter",
        "Clients cut off with 3008 because their outbound queue overflowed or stalled.",
        |m| m.slow_disconnects.load(Relaxed) as i128,
    ),
    (
        "wiresocket_publishes_total",
        "counter",
        "Publications accepted by the engine on this core (owner side).",
        |m| m.publishes.load(Relaxed) as i128,
    ),
    (
        "wiresocket_publish_rejected_total",
        "counter",
        "Publishes refused with error 111 because a cross-core queue was over its limit.",
        |m| m.publish_rejected.load(Relaxed) as i128,
    ),
    (
        "wiresocket_mesh_refused_total",
        "counter",
        "Cross-core calls refused (error 111) because the queue towards the target core was over mesh.pending_limit.",
        |m| m.mesh_refused.load(Relaxed) as i128,
    ),
    (
        "wiresocket_mesh_call_timeouts_total",
        "counter",
        "Waits for another core that passed mesh.call_timeout_ms.",
        |m| m.mesh_call_timeouts.load(Relaxed) as i128,
    ),
    (
        "wiresocket_engine_streams",
        "gauge",
        "Channel streams (history) held by this core's memory-engine shard.",
        |m| m.engine_streams.load(Relaxed) as i128,
    ),
    (
        "wiresocket_engine_channel_refusals_total",
        "counter",
        "New channel streams refused (error 106) at engine.max_channels.",
        |m| m.engine_channel_refusals.load(Relaxed) as i128,
    ),
    (
        "wiresocket_engine_subscribe_errors_total",
        "counter",
        "Failed node subscriptions to a channel in the engine (the subscribes waiting on them failed).",
        |m| m.engine_subscribe_errors.load(Relaxed) as i128,
    ),
    (
        "wiresocket_engine_redis_errors_total",
        "counter",
        "Redis engine operations that failed (Redis unreachable, timeout, script error): error 100, temporary.",
        |m| m.engine_redis_errors.load(Relaxed) as i128,
    ),
    (
        "wiresocket_engine_redis_wait_shortfalls_total",
        "counter",
        "Publishes stored on the Redis master but confirmed by fewer than engine.redis.wait_replicas replicas in time: error 100, temporary.",
        |m| m.engine_redis_wait_shortfalls.load(Relaxed) as i128,
    ),
    (
        "wiresocket_engine_redis_resubscribes_total",
        "counter",
        "Channels resubscribed after the Redis PUB/SUB connection came back (subscribers told to resubscribe, 2500).",
        |m| m.engine_redis_resubscribes.load(Relaxed) as i128,
    ),
    (
        "wiresocket_engine_redis_dropped_total",
        "counter",
        "Redis events dropped at a full core queue (engine.redis.core_queue); the channel was reset.",
        |m| m.engine_redis_dropped.load(Relaxed) as i128,
    ),
    (
        "wiresocket_session_cache_hits_total",
        "counter",
        "Session-record syncs that found the record unchanged since its last write (nothing sent to the engine).",
        |m| m.session_cache_hits.load(Relaxed) as i128,
    ),
    (
        "wiresocket_session_cache_misses_total",
        "counter",
        "Session-record syncs that found the record new or changed (written).",
        |m| m.session_cache_misses.load(Relaxed) as i128,
    ),
    (
        "wiresocket_session_cache_lookup_hits_total",
        "counter",
        "API connections {user} answered from the core's lookup cache.",
        |m| m.session_lookup_hits.load(Relaxed) as i128,
    ),
    (
        "wiresocket_session_cache_lookup_misses_total",
        "counter",
        "API connections {user} read from the engine (not in the lookup cache).",
        |m| m.session_lookup_misses.load(Relaxed) as i128,
    ),
    (
        "wiresocket_session_records_written_total",
        "counter",
        "Session records written to the engine (new, changed, or rewritten to extend their TTL).",
        |m| m.session_records_written.load(Relaxed) as i128,
    ),
    (
        "wiresocket_session_records_deleted_total",
        "counter",
        "Session records deleted from the engine (closed connections).",
        |m| m.session_records_deleted.load(Relaxed) as i128,
    ),
    (
        "wiresocket_session_record_batches_total",
        "counter",
        "Pipelines (round trips) that carried session-record writes.",
        |m| m.session_record_batches.load(Relaxed) as i128,
    ),
    (
        "wiresocket_stream_resets_total",
        "counter",
        "Channel streams that lost continuity while subscribed (subscribers told to resubscribe, 2500).",
        |m| m.stream_resets.load(Relaxed) as i128,
    ),
    (
        "wiresocket_session_panics_total",
        "counter",
        "Sessions dropped because handling them panicked (the core went on).",
        |m| m.session_panics.load(Relaxed) as i128,
    ),
    (
        "wiresocket_commands_rate_limited_total",
        "counter",
        "Client commands refused by the per-connection rate limit (error 111 or 3013).",
        |m| m.commands_rate_limited.load(Relaxed) as i128,
    ),
    (
        "wiresocket_deliveries_total",
        "counter",
        "Publication frames queued to subscribers on this core.",
        |m| m.deliveries.load(Relaxed) as i128,
    ),
    (
        "wiresocket_http_requests_total",
        "counter",
        "Plain HTTP requests served (health, metrics, API, errors).",
        |m| m.http_requests.load(Relaxed) as i128,
    ),
    (
        "wiresocket_api_requests_total",
        "counter",
        "Server API calls.",
        |m| m.api_requests.load(Relaxed) as i128,
    ),
    (
        "wiresocket_api_bad_requests_total",
        "counter",
        "Server API calls answered 400 (malformed body, missing field, bad channel name).",
        |m| m.api_bad_requests.load(Relaxed) as i128,
    ),
    (
        "wiresocket_mesh_pending",
        "gauge",
        "Cross-core messages waiting for room in a full ring.",
        |m| m.mesh_pending.load(Relaxed) as i128,
    ),
    (
        "wiresocket_pending_connections",
        "gauge",
        "Connections accepted but not yet past the protocol connect (HTTP, upgraded idle).",
        |m| m.pending.load(Relaxed) as i128,
    ),
    (
        "wiresocket_pending_refused_total",
        "counter",
        "Accepts answered 503 because the core held max_pending_connections_per_core.",
        |m| m.pending_refused.load(Relaxed) as i128,
    ),
    (
        "wiresocket_http_timeouts_total",
        "counter",
        "HTTP request heads or bodies that missed their deadline (408 or silent close).",
        |m| m.http_timeouts.load(Relaxed) as i128,
    ),
    (
        "wiresocket_http_rejected_total",
        "counter",
        "HTTP requests refused for framing or size (400, 411, 413, 431, 501), and WebSocket handshakes refused (400).",
        |m| m.http_rejected.load(Relaxed) as i128,
    ),
    (
        "wiresocket_http_unread_bodies_total",
        "counter",
        "Requests answered without reading their announced body, then closed.",
        |m| m.http_unread_bodies.load(Relaxed) as i128,
    ),
    (
        "wiresocket_api_refused_draining_total",
        "counter",
        "Server API calls answered 503 (temporary) because the node is draining.",
        |m| m.api_refused_draining.load(Relaxed) as i128,
    ),
];

pub fn render(cores: &[Arc<CoreMetrics>]) -> String {
    let mut out = String::with_capacity(8192);
    for (name, kind, help, get) in SIMPLE {
        header(&mut out, name, kind, help);
        for m in cores {
            let _ = writeln!(out, "{name}{{core=\"{}\"}} {}", m.core, get(m));
        }
    }
    header(
        &mut out,
        "wiresocket_disconnects_total",
        "counter",
        "Connections ended, by close code.",
    );
    for m in cores {
        for (d, n) in Disconnect::ALL.iter().zip(&m.closes) {
            let n = n.load(Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "wiresocket_disconnects_total{{core=\"{}\",code=\"{}\"}} {n}",
                    m.core, d.code
                );
            }
        }
    }
    let name = "wiresocket_command_errors_total";
    header(
        &mut out,
        name,
        "counter",
        "Client commands answered with an error, by error code.",
    );
    for m in cores {
        for (e, n) in crate::protocol::ErrorCode::ALL
            .iter()
            .zip(&m.command_errors)
        {
            let _ = writeln!(
                out,
                "{name}{{core=\"{}\",code=\"{}\"}} {}",
                m.core,
                e.code,
                n.load(Relaxed)
            );
        }
    }
    let name = "wiresocket_channel_denied_total";
    header(
        &mut out,
        name,
        "counter",
        "Channel operations refused by the channel policy (102, 103, 107, 108), by reason.",
    );
    for m in cores {
        for (reason, n) in super::CHANNEL_DENIED_REASONS.iter().zip(&m.channel_denied) {
            let _ = writeln!(
                out,
                "{name}{{core=\"{}\",reason=\"{reason}\"}} {}",
                m.core,
                n.load(Relaxed)
            );
        }
    }
    let name = "wiresocket_limit_refused_total";
    header(
        &mut out,
        name,
        "counter",
        "Connections, connects and publishes refused by the per-client limits (403, 429, 503, 3504, 111/3013, 106), by reason.",
    );
    for m in cores {
        for (reason, n) in super::LIMIT_REASONS.iter().zip(&m.limit_refused) {
            let _ = writeln!(
                out,
                "{name}{{core=\"{}\",reason=\"{reason}\"}} {}",
                m.core,
                n.load(Relaxed)
            );
        }
    }
    let name = "wiresocket_http_errors_total";
    header(
        &mut out,
        name,
        "counter",
        "Plain HTTP requests answered with an error status (bad request, unknown path or method, API key or body refused, ...), by status.",
    );
    for m in cores {
        let labels = super::HTTP_ERROR_STATUSES.iter().map(|s| s.to_string());
        for (status, n) in labels.chain(["other".to_string()]).zip(&m.http_errors) {
            let _ = writeln!(
                out,
                "{name}{{core=\"{}\",status=\"{status}\"}} {}",
                m.core,
                n.load(Relaxed)
            );
        }
    }
    let name = "wiresocket_publish_deliver_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Time from a publish being accepted to its frame being queued for a subscriber.",
    );
    for m in cores {
        let labels = format!("core=\"{}\"", m.core);
        m.deliver_latency.write_samples(&mut out, name, &labels);
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_and_histogram() {
        let m = Arc::new(CoreMetrics::new(1));
        CoreMetrics::inc(&m.accepted);
        m.closed(3008);
        m.deliver_latency.record_us(300);
        let text = render(&[m]);
        assert!(text.contains("wiresocket_connections_accepted_total{core=\"1\"} 1"));
        assert!(text.contains("wiresocket_disconnects_total{core=\"1\",code=\"3008\"} 1"));
        assert!(
            text.contains("wiresocket_publish_deliver_seconds_bucket{core=\"1\",le=\"0.0005\"} 1")
        );
        assert!(text.contains("wiresocket_publish_deliver_seconds_count{core=\"1\"} 1"));
    }
}
