//! Prometheus metrics, served at `/metrics` on the admin listener.
//!
//! One registry (the `prometheus` crate, without its protobuf feature), every name prefixed
//! `hookrouter_`, base units (seconds, bytes), `_total` for counters, histograms for
//! latencies and sizes. Label values come only from the config (route and target names,
//! listener addresses, certificate files) and from fixed sets of words (outcomes, reasons,
//! results): a request's path, address or event type never becomes a label value, so the
//! number of series is bounded by the config, whatever clients send.
//!
//! Counters and histograms are updated where things happen; gauges that describe state (queue
//! depth, breaker state, dead letters, disk use) are set when `/metrics` is scraped.

use std::sync::LazyLock;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};

/// The route label of requests that matched no route (the request log line uses it too).
pub(crate) const NO_ROUTE: &str = "_none";

/// Every metric the router exports.
pub(crate) struct Metrics {
    registry: Registry,
    /// By route and outcome: `accepted`, `duplicate`, `forwarded` or a rejection reason.
    pub(crate) requests: IntCounterVec,
    pub(crate) request_duration: HistogramVec,
    pub(crate) request_body: HistogramVec,
    /// By route and reason (the verification failure's label).
    pub(crate) verification_failures: IntCounterVec,
    pub(crate) ip_denied: IntCounterVec,
    /// Final outcomes of deliveries, by route, target and result (`delivered`, `dead`).
    pub(crate) deliveries: IntCounterVec,
    /// Failed attempts that will be retried.
    pub(crate) retries: IntCounterVec,
    pub(crate) attempt_duration: HistogramVec,
    pub(crate) dead_letters_added: IntCounterVec,
    pub(crate) dead_letters: IntGaugeVec,
    pub(crate) queue_depth: IntGaugeVec,
    pub(crate) oldest_pending: prometheus::GaugeVec,
    /// 0 closed, 1 half-open, 2 open.
    pub(crate) breaker_state: IntGaugeVec,
    pub(crate) queue_disk: IntGauge,
    /// 1 while the embedded store's database is not trusted after a failed write.
    pub(crate) queue_degraded: IntGauge,
    /// Instances sharing this one's NATS queue, itself included (1 on the embedded queue).
    pub(crate) cluster_instances: IntGauge,
    /// Distinct configs (by file digest) among those instances: above 1 while they differ.
    pub(crate) cluster_configs: IntGauge,
    /// By result: `success`, `failure`.
    pub(crate) reloads: IntCounterVec,
    pub(crate) generation: IntGauge,
    pub(crate) last_reload_success: IntGauge,
    pub(crate) tls_handshake_failures: IntCounter,
    pub(crate) certificate_expiry: prometheus::GaugeVec,
    /// Firing instances of each built-in alert rule.
    pub(crate) alerts_firing: IntGaugeVec,
}

/// Request latencies: 0.5 ms to 30 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Body sizes: 256 B to 16 MiB.
const BYTES_BUCKETS: &[f64] = &[
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, m)
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, m)
}

fn float_gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::GaugeVec {
    let m = prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, m)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let m = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric");
    register(registry, m)
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let build = gauge(
            &r,
            "hookrouter_build_info",
            "Always 1; the version in a label.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let generation = IntGauge::new(
            "hookrouter_config_generation",
            "The running config's generation: 1 at start, +1 per applied reload.",
        )
        .expect("valid metric");
        let last_reload_success = IntGauge::new(
            "hookrouter_config_last_reload_success",
            "1 if the last reload attempt (or the start) succeeded, 0 if it failed.",
        )
        .expect("valid metric");
        last_reload_success.set(1);
        let tls_handshake_failures = IntCounter::new(
            "hookrouter_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out.",
        )
        .expect("valid metric");
        let queue_disk = IntGauge::new(
            "hookrouter_queue_disk_bytes",
            "Bytes the queue holds: the embedded store on disk (database and journal), or the NATS event and dead-letter streams.",
        )
        .expect("valid metric");
        let queue_degraded = IntGauge::new(
            "hookrouter_queue_degraded",
            "1 while the embedded queue's database is being rebuilt after the disk failed to store a write (events are still accepted into its journal), else 0.",
        )
        .expect("valid metric");
        let cluster_instances = IntGauge::new(
            "hookrouter_cluster_instances",
            "Router instances seen sharing this one's queue in the last 30 seconds, itself included.",
        )
        .expect("valid metric");
        cluster_instances.set(1);
        let cluster_configs = IntGauge::new(
            "hookrouter_cluster_config_versions",
            "Distinct config files (by digest) those instances run: more than 1 while a change has not reached all of them.",
        )
        .expect("valid metric");
        cluster_configs.set(1);
        Metrics {
            requests: counter(
                &r,
                "hookrouter_requests_total",
                "Requests by route and outcome (accepted, duplicate, forwarded, or the rejection reason).",
                &["route", "outcome"],
            ),
            request_duration: histogram(
                &r,
                "hookrouter_request_duration_seconds",
                "Time from the request's head to the answer.",
                &["route"],
                DURATION_BUCKETS,
            ),
            request_body: histogram(
                &r,
                "hookrouter_request_body_bytes",
                "Size of request bodies read.",
                &["route"],
                BYTES_BUCKETS,
            ),
            verification_failures: counter(
                &r,
                "hookrouter_verification_failures_total",
                "Signature verification failures by route and reason.",
                &["route", "reason"],
            ),
            ip_denied: counter(
                &r,
                "hookrouter_ip_denied_total",
                "Requests refused by a route's allowlist.",
                &["route"],
            ),
            deliveries: counter(
                &r,
                "hookrouter_deliveries_total",
                "Deliveries finished, by route, target and result (delivered, dead).",
                &["route", "target", "result"],
            ),
            retries: counter(
                &r,
                "hookrouter_delivery_retries_total",
                "Delivery attempts that failed and will be retried.",
                &["route", "target"],
            ),
            attempt_duration: histogram(
                &r,
                "hookrouter_delivery_attempt_duration_seconds",
                "Time of one delivery attempt, until the target's answer or the failure.",
                &["target"],
                DURATION_BUCKETS,
            ),
            dead_letters_added: counter(
                &r,
                "hookrouter_dead_letters_added_total",
                "Deliveries that became dead letters.",
                &["route", "target"],
            ),
            dead_letters: gauge(
                &r,
                "hookrouter_dead_letters",
                "Dead letters in the store now, by target.",
                &["target"],
            ),
            queue_depth: gauge(
                &r,
                "hookrouter_queue_depth",
                "Deliveries waiting or in flight, by target.",
                &["target"],
            ),
            oldest_pending: float_gauge(
                &r,
                "hookrouter_queue_oldest_pending_age_seconds",
                "Age of the oldest waiting delivery (since its event arrived or was replayed), by target; 0 when none waits.",
                &["target"],
            ),
            breaker_state: gauge(
                &r,
                "hookrouter_circuit_breaker_state",
                "A target's circuit breaker: 0 closed, 1 half-open, 2 open.",
                &["target"],
            ),
            queue_disk: register(&r, queue_disk),
            queue_degraded: register(&r, queue_degraded),
            cluster_instances: register(&r, cluster_instances),
            cluster_configs: register(&r, cluster_configs),
            reloads: counter(
                &r,
                "hookrouter_config_reloads_total",
                "Config reloads by result (success, failure).",
                &["result"],
            ),
            generation: register(&r, generation),
            last_reload_success: register(&r, last_reload_success),
            tls_handshake_failures: register(&r, tls_handshake_failures),
            certificate_expiry: float_gauge(
                &r,
                "hookrouter_certificate_expiry_timestamp_seconds",
                "When a served certificate expires (notAfter), unix seconds.",
                &["listener", "certificate"],
            ),
            alerts_firing: gauge(
                &r,
                "hookrouter_alerts_firing",
                "Instances of a built-in alert rule firing now.",
                &["alert"],
            ),
            registry: r,
        }
    }

    /// The registry in the Prometheus text format.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 << 10);
        // Encoding into a Vec cannot fail for well-formed families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// The current values of every metric (what the alerts read).
    pub(crate) fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// A route's request counter for `outcome`.
    pub(crate) fn request(&self, route: &str, outcome: &str, seconds: f64) {
        self.requests.with_label_values(&[route, outcome]).inc();
        self.request_duration
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// The histogram of one target's attempt durations.
    pub(crate) fn attempt(&self, target: &str) -> Histogram {
        self.attempt_duration.with_label_values(&[target])
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub(crate) fn get() -> &'static Metrics {
    &METRICS
}

/// Records a config generation that took effect: its number and when each certificate it
/// serves expires.
pub(crate) fn config_applied(snap: &crate::snapshot::Snapshot) {
    let m = get();
    m.generation
        .set(i64::try_from(snap.generation).unwrap_or(i64::MAX));
    // Read every file first, then swap the series in one short step.
    let mut expiry = Vec::new();
    for l in &snap.config.listen {
        for ck in l.tls.iter().flatten() {
            if let Some(t) = crate::listener::tls::not_after(&ck.cert) {
                expiry.push((l.addr.to_string(), ck.cert.display().to_string(), t));
            }
        }
    }
    m.certificate_expiry.reset();
    for (listener, cert, t) in expiry {
        m.certificate_expiry
            .with_label_values(&[&listener, &cert])
            .set(t as f64);
    }
}

/// The content type of [`Metrics::encode`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_prefixed_and_counters_end_in_total() {
        let m = get();
        m.request("r", "accepted", 0.002);
        m.tls_handshake_failures.inc();
        let text = String::from_utf8(m.encode()).expect("utf-8");
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split_whitespace().skip(2);
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("bad TYPE line {line}");
            };
            assert!(name.starts_with("hookrouter_"), "{name}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(text.contains("hookrouter_requests_total{outcome=\"accepted\",route=\"r\"}"));
        assert!(text.contains("hookrouter_build_info{version="));
    }
}
