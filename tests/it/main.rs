//! Integration tests: the real `hookrouter` binary on 127.0.0.1, real sockets and TLS.

#![allow(unreachable_pub)]

mod support;

/// Admin API and the `dlq` / `events` commands: token, listings, replay.
mod admin_api;
/// Built-in alerts: firing after `for`, every receiver format, resolved.
mod alerts;
/// Client address and allowlists.
mod allowlist;
/// Crash safety: repeated SIGKILL under load loses no acknowledged event.
mod crash;
/// Async mode: durable fan-out, retries, dead letters, dedup, versions, signing, resume.
mod deliver;
/// Sync forwarding: relay, failures, limits, paths.
mod forward;
/// The providers' official SDKs sign into the router and verify what it forwards.
mod interop;
/// Startup, admin probes, timeouts, connection cap, graceful shutdown.
mod lifecycle;
/// JSON logs: a line per request and attempt, no secrets.
mod logs;
/// `/metrics`: exact values, promtool, bounded series.
mod metrics;
/// The NATS JetStream queue shared by several instances: exactly-once sharing, dedup across
/// instances, an instance killed and the NATS server restarted under load, dead letters and
/// replay through another instance, the instances registry.
mod nats;
/// A private `nats-server` per test (used by `nats`).
mod nats_server;
/// Reload on SIGHUP and file change; certificates too.
mod reload;
/// TLS: versions, key types, SNI, HTTP/2 by ALPN.
mod tls;
/// Signature verification end to end: signed requests pass, tampered ones get 401.
mod verify;

/// Bad input: refused with the right status, nothing forwarded.
mod bad_input;
/// A full or failing disk: 503, never 202.
mod disk_full;
/// HTTP/1.1 smuggling and limits, HTTP/2 abuse.
mod http_attacks;
/// testssl.sh finds nothing high or critical.
mod testssl;
/// A config with one plain listener and a sync route `/hooks/test` to `target_url`; `route_extra`
/// is spliced into the route (indented by 4).
pub fn sync_config(target_url: &str, route_extra: &str) -> String {
    format!(
        r#"version: 1
listen:
  - addr: "127.0.0.1:{{port}}"
admin: {{ addr: "127.0.0.1:{{admin}}" }}
targets:
  t: {{ url: "{target_url}", timeout: 2s }}
routes:
  - name: test
    path: /hooks/test
    mode: sync
{route_extra}
    deliver: [ {{ target: t }} ]
"#
    )
}
