//! YAML tree → validated `Config`. Every check pushes its error and goes on, so one run reports
//! everything that is wrong. Per-value checks happen where the value is read (so they carry a
//! line and column); cross-field checks (references, conflicts) run after the walk.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Duration,
};

use http::{HeaderName, Method, Uri};

use super::{
    model::{
        Admin, AlertRule, Alerts, CertKey, Comparison, Config, Defaults, Deliver, Embedded, Listen,
        Mode, Nats, Notify, NotifyFormat, OnUnknown, Queue, Retry, Route, Secret, Server, Sign,
        Signal, Target, Verify, VersionSpec,
    },
    yaml::{Map, Node, Reader, Text, location},
};
use crate::{event::Source, path, verify::SchemeName};

/// The config format this build reads.
const FORMAT_VERSION: u64 = 1;
/// Built-in `defaults.max_body`: generous for webhook payloads, small enough to bound memory.
const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// Built-in target timeout; providers themselves give up after 10–30 s.
const DEFAULT_TARGET_TIMEOUT: Duration = Duration::from_secs(10);
/// Built-in `defaults.dedup_window`: providers retry a failed delivery for hours to days, and
/// most of their retries come within the first day.
const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Built-in `targets.NAME.max_in_flight`.
const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// Largest `targets.NAME.max_in_flight`.
const MAX_IN_FLIGHT: u64 = 1_000_000;
/// Largest `targets.NAME.retry.max_attempts`.
const MAX_ATTEMPTS: u64 = 100_000;
/// Smallest `queue.embedded.max_size`.
const MIN_QUEUE_SIZE: u64 = 1 << 20;
/// Built-in `queue.embedded.path`, from the config file's folder like any relative path.
const DEFAULT_QUEUE_PATH: &str = "./data";
/// Built-in `version.header`: the header that carries the version to targets.
const DEFAULT_VERSION_HEADER: &str = "webhook-version";
/// The only `sign.scheme` for now.
const SIGN_SCHEME: &str = "standard-webhooks";
/// Built-in `alerts.rules[].window`.
const DEFAULT_ALERT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Built-in `alerts.rules[].baseline` (`traffic_ratio`).
const DEFAULT_ALERT_BASELINE: Duration = Duration::from_secs(3600);
/// Built-in `alerts.rules[].min_events`: fewer events than this say nothing about a ratio.
const DEFAULT_ALERT_MIN_EVENTS: u64 = 10;
/// Largest `alerts.rules[].min_events`.
const MAX_ALERT_MIN_EVENTS: u64 = 1_000_000_000;
/// `alerts.rules[].severity` values; the second is the default.
const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];
/// Built-in `alerts.notify[].timeout`.
const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// How a rule's `when` is written, for hints.
const WHEN_EXAMPLE: &str = "`when: \"delivery_failure_ratio > 0.05\"`";

/// Settings under `server:` and their built-in values.
const DEFAULT_SERVER: Server = Server {
    tls_handshake_timeout: Duration::from_secs(10),
    header_timeout: Duration::from_secs(10),
    body_timeout: Duration::from_secs(30),
    idle_timeout: Duration::from_secs(60),
    drain_timeout: Duration::from_secs(30),
    max_connections: 10_000,
    max_header_bytes: 64 * 1024,
};

/// Walks the document root and returns the model, or nothing when errors were recorded.
pub(crate) fn config(r: &mut Reader<'_>, root: &Node<'_>, source: PathBuf) -> Option<Config> {
    let mut m = r.map(root, "")?;

    if let Some(n) = m.get("version")
        && let Some(v) = r.integer(n, "version", 0..=u64::MAX)
        && v != FORMAT_VERSION
    {
        r.error(n, "version", format!("config format version {v} is not supported: this build reads `version: {FORMAT_VERSION}`"));
    }

    let listen = match m.get("listen") {
        Some(n) => r
            .seq(n, "listen")
            .into_iter()
            .enumerate()
            .filter_map(|(i, (n, p))| listen(r, n, &p).map(|(l, shown)| (i, l, shown)))
            .collect::<Vec<_>>(),
        None => {
            r.error_at(None, "listen", "missing: add at least one listener, e.g. `listen: [ { addr: \"0.0.0.0:8443\", tls: { cert: cert.pem, key: key.pem } } ]`");
            Vec::new()
        }
    };
    let admin = m.get("admin").and_then(|n| admin(r, n, "admin"));
    let trusted_proxies = m
        .get("trusted_proxies")
        .map(|n| r.networks(n, "trusted_proxies"))
        .unwrap_or_default();
    let defaults = match m.get("defaults") {
        Some(n) => defaults(r, n, "defaults"),
        None => DEFAULT_DEFAULTS,
    };
    let server = match m.get("server") {
        Some(n) => server(r, n, "server"),
        None => DEFAULT_SERVER,
    };
    let queue = match m.get("queue") {
        Some(n) => queue(r, n, "queue"),
        None => Queue::Embedded(Embedded::at(r.relative(DEFAULT_QUEUE_PATH))),
    };
    // `None` when `targets:` itself is unreadable: references to it are then not checked.
    let (targets, target_names) = match m.get("targets") {
        Some(n) => match targets(r, n, "targets") {
            Some((t, names)) => (t, Some(names)),
            None => (BTreeMap::new(), None),
        },
        None => (BTreeMap::new(), Some(Vec::new())),
    };
    let mut refs = Vec::new();
    // The names of all routes (valid or not), for references from alert rules; those are not
    // checked when `routes:` itself is unreadable.
    let mut route_names = Vec::new();
    let routes_readable = m
        .get("routes")
        .is_none_or(|n| matches!(n.data, saphyr::YamlData::Sequence(_)));
    let routes: Vec<Placed<Route>> = match m.get("routes") {
        Some(n) => r
            .seq(n, "routes")
            .into_iter()
            .enumerate()
            .filter_map(|(index, (n, p))| {
                route(r, n, &p, &defaults, &mut refs, &mut route_names).map(|(item, shown)| {
                    Placed {
                        item,
                        index,
                        location: location(n),
                        shown,
                    }
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let mut route_refs = Vec::new();
    let alerts = match m.get("alerts") {
        Some(n) => alerts(r, n, "alerts", &mut refs, &mut route_refs),
        None => Alerts::default(),
    };
    m.finish(r);

    check_listeners(r, &listen, admin.as_ref());
    if let Some(names) = &target_names {
        check_references(r, "target", "targets", names, refs);
    }
    if routes_readable {
        check_references(r, "route", "routes", &route_names, route_refs);
    }
    check_routes(r, &routes);

    let listen = listen.into_iter().map(|(_, l, _)| l).collect();
    let routes = routes.into_iter().map(|p| p.item).collect();
    r.errors.is_empty().then_some(Config {
        source,
        listen,
        admin,
        trusted_proxies,
        defaults,
        server,
        queue,
        targets,
        routes,
        alerts,
    })
}

/// An item that passed its own checks, with where it stands in the file and how to name its
/// values in messages (never a referenced secret's value).
struct Placed<T> {
    item: T,
    index: usize,
    location: Option<super::Location>,
    shown: Shown,
}

/// How a route's name and path are quoted in messages.
struct Shown {
    name: String,
    path: String,
}

fn listen(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<(Listen, String)> {
    let mut m = r.map(node, path)?;
    let addr = match m.get("addr") {
        Some(n) => {
            let p = m.path("addr");
            r.text(n, &p)
                .and_then(|t| r.socket_addr(n, &p).map(|a| (a, t.to_string())))
        }
        None => {
            r.error(
                node,
                &m.path("addr"),
                "missing: give the address to listen on, e.g. `0.0.0.0:8443`",
            );
            None
        }
    };
    let tls = m.get("tls").map(|n| tls(r, n, &m.path("tls")));
    m.finish(r);
    let (addr, shown) = addr?;
    Some((Listen { addr, tls }, shown))
}

/// `tls: { cert, key }` or a list of them (chosen by SNI; the first is the default).
fn tls(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Vec<CertKey> {
    if let saphyr::YamlData::Sequence(_) = node.data {
        let certs: Vec<CertKey> = r
            .seq(node, path)
            .into_iter()
            .filter_map(|(n, p)| cert_key(r, n, &p))
            .collect();
        if certs.is_empty() {
            r.error(
                node,
                path,
                "the list of certificates is empty: give at least one `{ cert, key }`",
            );
        }
        certs
    } else {
        cert_key(r, node, path).into_iter().collect()
    }
}

fn cert_key(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<CertKey> {
    let mut m = r.map(node, path)?;
    let cert = required(r, &mut m, node, "cert", "the PEM certificate chain file")
        .and_then(|(n, p)| r.file_path(n, &p));
    let key = required(r, &mut m, node, "key", "the PEM private key file")
        .and_then(|(n, p)| r.file_path(n, &p));
    let names = m
        .get("names")
        .map(|n| {
            r.texts(n, &m.path("names"))
                .into_iter()
                .filter_map(|(t, loc, p)| {
                    let name = t.value.trim().to_ascii_lowercase();
                    if valid_host(name.trim_start_matches("*.")) {
                        Some(name)
                    } else {
                        r.error_at(
                            loc,
                            &p,
                            format!("{t} is not a DNS name (a leading `*.` wildcard is allowed)"),
                        );
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    m.finish(r);
    Some(CertKey {
        cert: cert?,
        key: key?,
        names,
    })
}

fn required<'y>(
    r: &mut Reader<'_>,
    m: &mut Map<'y>,
    parent: &Node<'_>,
    key: &'static str,
    what: &str,
) -> Option<(&'y Node<'y>, String)> {
    let path = m.path(key);
    match m.get(key) {
        Some(n) => Some((n, path)),
        None => {
            r.error(parent, &path, format!("missing: give {what}"));
            None
        }
    }
}

fn admin(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<Admin> {
    let mut m = r.map(node, path)?;
    let addr = required(
        r,
        &mut m,
        node,
        "addr",
        "the admin address, e.g. `127.0.0.1:9090`",
    )
    .and_then(|(n, p)| r.socket_addr(n, &p));
    let token = m
        .get("token")
        .and_then(|n| r.non_empty(n, &m.path("token"), "the admin token"))
        .map(|t| Secret::new(t.value));
    m.finish(r);
    Some(Admin { addr: addr?, token })
}

/// Settings under `defaults:` and their built-in values.
const DEFAULT_DEFAULTS: Defaults = Defaults {
    max_body: DEFAULT_MAX_BODY,
    tolerance: None,
    dedup_window: DEFAULT_DEDUP_WINDOW,
};

fn defaults(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Defaults {
    let mut d = DEFAULT_DEFAULTS;
    let Some(mut m) = r.map(node, path) else {
        return d;
    };
    if let Some(n) = m.get("max_body") {
        d.max_body = max_body(r, n, &m.path("max_body")).unwrap_or(d.max_body);
    }
    if let Some(n) = m.get("tolerance") {
        d.tolerance = r.duration(n, &m.path("tolerance")).or(d.tolerance);
    }
    if let Some(n) = m.get("dedup_window") {
        d.dedup_window = r
            .duration(n, &m.path("dedup_window"))
            .unwrap_or(d.dedup_window);
    }
    m.finish(r);
    d
}

/// A duration that must be more than zero.
fn positive_duration(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<Duration> {
    let d = r.duration(node, path)?;
    if d.is_zero() {
        r.error(node, path, "must be more than 0");
        return None;
    }
    Some(d)
}

fn max_body(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<u64> {
    let v = r.size(node, path)?;
    if v == 0 {
        r.error(node, path, "must be more than 0 bytes");
        return None;
    }
    if v > MAX_MAX_BODY {
        r.error(node, path, "must be at most 1GiB (webhooks are far smaller; a stored event must fit the queue's record format)");
        return None;
    }
    Some(v)
}

/// The largest `max_body`: well within the queue record's 32-bit lengths.
const MAX_MAX_BODY: u64 = 1 << 30;

fn server(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Server {
    let mut s = DEFAULT_SERVER;
    let Some(mut m) = r.map(node, path) else {
        return s;
    };
    let durations: [(&'static str, &mut Duration); 5] = [
        ("tls_handshake_timeout", &mut s.tls_handshake_timeout),
        ("header_timeout", &mut s.header_timeout),
        ("body_timeout", &mut s.body_timeout),
        ("idle_timeout", &mut s.idle_timeout),
        ("drain_timeout", &mut s.drain_timeout),
    ];
    for (key, slot) in durations {
        if let Some(n) = m.get(key) {
            let p = m.path(key);
            match r.duration(n, &p) {
                Some(d) if d.is_zero() && key != "drain_timeout" => {
                    r.error(n, &p, "must be more than 0");
                }
                Some(d) => *slot = d,
                None => {}
            }
        }
    }
    if let Some(n) = m.get("max_connections")
        && let Some(v) = r.integer(n, &m.path("max_connections"), 1..=1_000_000)
    {
        s.max_connections = v as usize;
    }
    if let Some(n) = m.get("max_header_bytes") {
        let p = m.path("max_header_bytes");
        match r.size(n, &p) {
            Some(v) if (8192..=1 << 20).contains(&v) => s.max_header_bytes = v as usize,
            Some(_) => r.error(n, &p, "must be from 8KiB to 1MiB"),
            None => {}
        }
    }
    m.finish(r);
    s
}

fn queue(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Queue {
    let fallback = |r: &Reader<'_>| Queue::Embedded(Embedded::at(r.relative(DEFAULT_QUEUE_PATH)));
    let Some(mut m) = r.map(node, path) else {
        return fallback(r);
    };
    let embedded = m.get("embedded");
    let nats = m.get("nats");
    let q = match (embedded, nats) {
        (Some(_), Some(n)) => {
            r.error(
                n,
                &m.path("nats"),
                "`queue.embedded` and `queue.nats` are exclusive: keep one",
            );
            fallback(r)
        }
        (Some(e), None) => Queue::Embedded(embedded_queue(r, e, &m.path("embedded"))),
        (None, Some(n)) => match nats_queue(r, n, &m.path("nats")) {
            Some(q) => Queue::Nats(q),
            None => fallback(r),
        },
        (None, None) => fallback(r),
    };
    m.finish(r);
    q
}

/// `queue.nats: { url, stream, replicas, ack_wait, duplicate_window, retention,
/// dead_retention, max_size }`; `url` is one URL or a list (a cluster's seeds).
fn nats_queue(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<Nats> {
    let mut m = r.map(node, path)?;
    let mut urls = Vec::new();
    match m.get("url") {
        None => r.error(
            node,
            &m.path("url"),
            "missing `url`: the NATS server URL, e.g. `nats://127.0.0.1:4222`",
        ),
        Some(n) => {
            let p = m.path("url");
            let items = match &n.data {
                saphyr::YamlData::Sequence(_) => r.seq(n, &p),
                _ => vec![(n, p)],
            };
            if items.is_empty() {
                r.error(n, &m.path("url"), "give at least one NATS server URL");
            }
            for (n, p) in items {
                if let Some(u) = r.non_empty(n, &p, "the NATS URL") {
                    if nats_url_ok(&u.value) {
                        urls.push(u.value);
                    } else {
                        r.error(n, &p, "expected `nats://host:port` (or `tls://host:port`)");
                    }
                }
            }
        }
    }
    let mut q = Nats::at(urls);
    if let Some(n) = m.get("stream") {
        let p = m.path("stream");
        if let Some(t) = r.non_empty(n, &p, "the stream name") {
            if t.value.len() <= 32 && valid_name(&t.value) {
                q.stream = t.value;
            } else {
                r.error(
                    n,
                    &p,
                    "a stream name is at most 32 letters, digits, `-` and `_`",
                );
            }
        }
    }
    if let Some(n) = m.get("replicas") {
        let p = m.path("replicas");
        match r.integer(n, &p, 1..=5) {
            Some(v) if v % 2 == 1 => q.replicas = usize::try_from(v).unwrap_or(1),
            Some(_) => r.error(
                n,
                &p,
                "use an odd number of replicas (1, 3 or 5): JetStream needs a majority",
            ),
            None => {}
        }
    }
    for (key, slot) in [
        ("ack_wait", &mut q.ack_wait),
        ("retention", &mut q.retention),
        ("dead_retention", &mut q.dead_retention),
    ] {
        if let Some(d) = m
            .get(key)
            .and_then(|n| positive_duration(r, n, &m.path(key)))
        {
            *slot = d;
        }
    }
    if let Some(n) = m.get("ack_wait")
        && q.ack_wait < Duration::from_secs(1)
    {
        r.error(n, &m.path("ack_wait"), "must be at least 1s");
    }
    if let Some(n) = m.get("duplicate_window") {
        q.duplicate_window = positive_duration(r, n, &m.path("duplicate_window"));
    }
    if let Some(n) = m.get("max_size") {
        let p = m.path("max_size");
        match r.size(n, &p) {
            Some(v) if v >= MIN_QUEUE_SIZE => q.max_size = v,
            Some(_) => r.error(n, &p, "must be at least 1MiB"),
            None => {}
        }
    }
    m.finish(r);
    Some(q)
}

/// Whether `u` looks like a NATS server URL: a scheme the client speaks and a host.
fn nats_url_ok(u: &str) -> bool {
    let Some((scheme, rest)) = u.split_once("://") else {
        return false;
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    matches!(scheme, "nats" | "tls") && !host.is_empty() && !host.contains('/')
}

/// `queue.embedded: { path, retention, dead_retention, max_size }`.
fn embedded_queue(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Embedded {
    let mut e = Embedded::at(r.relative(DEFAULT_QUEUE_PATH));
    let Some(mut m) = r.map(node, path) else {
        return e;
    };
    if let Some(dir) = m.get("path").and_then(|n| r.file_path(n, &m.path("path"))) {
        e.path = dir;
    }
    for (key, slot) in [
        ("retention", &mut e.retention),
        ("dead_retention", &mut e.dead_retention),
    ] {
        if let Some(d) = m
            .get(key)
            .and_then(|n| positive_duration(r, n, &m.path(key)))
        {
            *slot = d;
        }
    }
    if let Some(n) = m.get("max_size") {
        let p = m.path("max_size");
        match r.size(n, &p) {
            Some(v) if v >= MIN_QUEUE_SIZE => e.max_size = v,
            Some(_) => r.error(n, &p, "must be at least 1MiB"),
            None => {}
        }
    }
    m.finish(r);
    e
}

/// The valid targets, and the names of all targets (valid or not) for reference checks, so a
/// broken target is reported once rather than again at every route that names it.
fn targets(
    r: &mut Reader<'_>,
    node: &Node<'_>,
    path: &str,
) -> Option<(BTreeMap<String, Target>, Vec<String>)> {
    let mut out = BTreeMap::new();
    let mut names = Vec::new();
    let saphyr::YamlData::Mapping(entries) = &node.data else {
        r.map(node, path);
        return None;
    };
    for (k, v) in entries {
        let Some(name) = k.data.as_str() else {
            r.error(k, path, "target names must be strings");
            continue;
        };
        let p = super::yaml::key_path(path, name);
        names.push(name.to_string());
        if !valid_name(name) {
            r.error(
                k,
                &p,
                format!("`{name}` is not a valid target name: use letters, digits, `-` and `_`"),
            );
        }
        if let Some(t) = target(r, v, &p, name) {
            out.insert(name.to_string(), t);
        }
    }
    Some((out, names))
}

fn target(r: &mut Reader<'_>, node: &Node<'_>, path: &str, name: &str) -> Option<Target> {
    let mut m = r.map(node, path)?;
    let url = required(
        r,
        &mut m,
        node,
        "url",
        "the target URL, e.g. `http://127.0.0.1:7001/hooks`",
    )
    .and_then(|(n, p)| target_url(r, n, &p));
    let timeout = match m.get("timeout") {
        Some(n) => positive_duration(r, n, &m.path("timeout")),
        None => Some(DEFAULT_TARGET_TIMEOUT),
    };
    let max_in_flight = match m.get("max_in_flight") {
        Some(n) => r
            .integer(n, &m.path("max_in_flight"), 1..=MAX_IN_FLIGHT)
            .map(|v| v as usize),
        None => Some(DEFAULT_MAX_IN_FLIGHT),
    };
    let retry = match m.get("retry") {
        Some(n) => retry(r, n, &m.path("retry")),
        None => Some(Retry::default()),
    };
    let sign = match m.get("sign") {
        Some(n) => sign(r, n, &m.path("sign")).map(Some),
        None => Some(None),
    };
    m.finish(r);
    Some(Target {
        name: name.to_string(),
        url: url?,
        timeout: timeout?,
        max_in_flight: max_in_flight?,
        retry: retry?,
        sign: sign?,
    })
}

/// `retry: { max_attempts, initial, max_delay, max_age }` over [`Retry::default`].
fn retry(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<Retry> {
    let mut out = Retry::default();
    let mut m = r.map(node, path)?;
    let errors = r.errors.len();
    if let Some(n) = m.get("max_attempts")
        && let Some(v) = r.integer(n, &m.path("max_attempts"), 1..=MAX_ATTEMPTS)
    {
        out.max_attempts = v as u32;
    }
    // Each duration that is set, with where it is, for the `max_delay` ≥ `initial` check.
    fn read(
        r: &mut Reader<'_>,
        m: &mut Map<'_>,
        key: &'static str,
        slot: &mut Duration,
    ) -> Option<Option<super::Location>> {
        let n = m.get(key)?;
        *slot = positive_duration(r, n, &m.path(key))?;
        Some(location(n))
    }
    let initial = read(r, &mut m, "initial", &mut out.initial);
    let max_delay = read(r, &mut m, "max_delay", &mut out.max_delay);
    read(r, &mut m, "max_age", &mut out.max_age);
    if r.errors.len() == errors && out.max_delay < out.initial {
        let (initial_shown, max_delay_shown) = (show(out.initial), show(out.max_delay));
        match (max_delay, initial) {
            (Some(loc), _) => r.error_at(
                loc,
                &m.path("max_delay"),
                format!("{max_delay_shown} is shorter than `initial` ({initial_shown}{}): the largest delay between attempts must be at least the first one", if initial.is_some() { "" } else { ", the default" }),
            ),
            (None, Some(loc)) => r.error_at(
                loc,
                &m.path("initial"),
                format!("{initial_shown} is longer than `max_delay` ({max_delay_shown}, the default): lower `initial` or raise `max_delay`"),
            ),
            (None, None) => {}
        }
    }
    m.finish(r);
    (r.errors.len() == errors).then_some(out)
}

/// A duration as an operator would write it (`5s`, `1h30m`, `500ms`), for messages.
fn show(d: Duration) -> String {
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let ms = d.subsec_millis();
    if ms > 0 || out.is_empty() {
        out.push_str(&format!("{ms}ms"));
    }
    format!("`{out}`")
}

/// `sign: { scheme: standard-webhooks, secret }`. The secret is checked by the same decoder
/// that signs with it; messages never contain it.
fn sign(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<Sign> {
    let mut m = r.map(node, path)?;
    let scheme = required(
        r,
        &mut m,
        node,
        "scheme",
        &format!("the signing scheme: `scheme: {SIGN_SCHEME}`"),
    )
    .and_then(|(n, p)| {
        let t = r.non_empty(n, &p, "the signing scheme")?;
        if t.value.trim() != SIGN_SCHEME {
            r.error(
                n,
                &p,
                format!("{t} is not a signing scheme: use `{SIGN_SCHEME}` (the only one hookrouter signs with)"),
            );
            return None;
        }
        Some(())
    });
    let secret = required(
        r,
        &mut m,
        node,
        "secret",
        "the signing secret, e.g. `secret: \"${env:BILLING_SIGNING_SECRET}\"`",
    )
    .and_then(|(n, p)| {
        let t = r.non_empty(n, &p, "the signing secret")?;
        let check = crate::verify::sign(
            SchemeName::StandardWebhooks,
            &t.value,
            b"",
            0,
            "check",
            "",
            &crate::verify::Options::default(),
        );
        if let Err(why) = check {
            r.error(
                n,
                &p,
                format!("{why}; to sign deliveries, use `whsec_` followed by the base64 of a random key (e.g. from `openssl rand -base64 32`) and give the target the same secret"),
            );
            return None;
        }
        Some(Secret::new(t.value))
    });
    m.finish(r);
    scheme?;
    Some(Sign { secret: secret? })
}

fn target_url(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<Uri> {
    let t = r.non_empty(node, path, "the target URL")?;
    let Ok(uri) = t.value.trim().parse::<Uri>() else {
        r.error(
            node,
            path,
            format!("{t} is not a URL: write e.g. `http://127.0.0.1:7001/hooks`"),
        );
        return None;
    };
    let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
    if !scheme_ok || uri.host().is_none() {
        r.error(
            node,
            path,
            format!("{t} must be an absolute `http://` or `https://` URL with a host"),
        );
        return None;
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        r.error(
            node,
            path,
            "credentials in the target URL are not supported: the URL must not contain `user@`",
        );
        return None;
    }
    Some(uri)
}

fn route(
    r: &mut Reader<'_>,
    node: &Node<'_>,
    path: &str,
    defaults: &Defaults,
    refs: &mut Vec<Reference>,
    names: &mut Vec<String>,
) -> Option<(Route, Shown)> {
    let mut m = r.map(node, path)?;
    let name = required(
        r,
        &mut m,
        node,
        "name",
        "a unique route name, e.g. `name: stripe`",
    )
    .and_then(|(n, p)| {
        let t = r.non_empty(n, &p, "the route name")?;
        names.push(t.value.clone());
        if !valid_name(&t.value) {
            r.error(
                n,
                &p,
                format!("{t} is not a valid route name: use letters, digits, `-` and `_`"),
            );
            return None;
        }
        Some(t)
    });
    let route_path = required(
        r,
        &mut m,
        node,
        "path",
        "the exact request path, e.g. `path: /hooks/stripe`",
    )
    .and_then(|(n, p)| {
        let t = r.non_empty(n, &p, "the route path")?;
        if let Err(e) = path::check(&t.value) {
            r.error(
                n,
                &p,
                format!("{t} {e}: write the exact canonical path, e.g. `/hooks/stripe`"),
            );
            return None;
        }
        if t.value.contains('?') || t.value.contains('#') {
            r.error(
                n,
                &p,
                format!("{t} must be a path only, without `?query` or `#fragment`"),
            );
            return None;
        }
        Some(t)
    });
    let methods = match m.get("methods") {
        Some(n) => methods(r, n, &m.path("methods")),
        None => vec![Method::POST],
    };
    let host = m.get("host").and_then(|n| {
        let p = m.path("host");
        let t = r.non_empty(n, &p, "the host")?;
        let h = t.value.trim().to_ascii_lowercase();
        if !valid_host(&h) {
            r.error(n, &p, format!("{t} is not a host name: write the name only, without scheme or port, e.g. `hooks.example.com`"));
            return None;
        }
        Some(h)
    });
    let mode = match m.get("mode") {
        Some(n) => {
            let p = m.path("mode");
            match r.text(n, &p) {
                Some(s) if s.value.trim() == "async" => Some(Mode::Async),
                Some(s) if s.value.trim() == "sync" => Some(Mode::Sync),
                Some(s) => {
                    r.error(n, &p, format!("{s} is not a mode: use `async` or `sync`"));
                    None
                }
                None => None,
            }
        }
        None => Some(Mode::Async),
    };
    let allow_ips = m.get("allow_ips").map(|n| {
        let p = m.path("allow_ips");
        let nets = r.networks(n, &p);
        if matches!(&n.data, saphyr::YamlData::Sequence(s) if s.is_empty()) {
            r.error(n, &p, "is empty, which would refuse every client: list the allowed networks, or remove `allow_ips` to allow any client");
        }
        nets
    });
    let max_body = match m.get("max_body") {
        Some(n) => max_body(r, n, &m.path("max_body")),
        None => Some(defaults.max_body),
    };
    let verify_node = m.get("verify");
    let verify = verify_node.and_then(|n| verify(r, n, &m.path("verify"), defaults));
    let mut event = verify
        .as_ref()
        .map(|v| crate::event::defaults(v.scheme))
        .unwrap_or_default();
    if let Some(n) = m.get("event") {
        event_override(r, n, &m.path("event"), &mut event);
    }
    // Whether the event type has a source; taken as yes when `verify` is broken (its scheme
    // would give the default), so one mistake is not reported twice.
    let has_type = event.kind.is_some() || (verify_node.is_some() && verify.is_none());
    let version_node = m.get("version");
    let version = version_node.and_then(|n| version(r, n, &m.path("version")));
    let dedup_window = match m.get("dedup_window") {
        Some(n) => {
            let p = m.path("dedup_window");
            let d = r.duration(n, &p);
            if mode == Some(Mode::Sync) {
                r.error(n, &p, "`dedup_window` applies to `mode: async` only (sync mode forwards every request and relays the answer): remove it");
            }
            d
        }
        None => Some(defaults.dedup_window),
    };
    let context = DeliverContext {
        mode,
        has_version: version_node.is_some(),
        has_type,
    };
    let deliver = match m.get("deliver") {
        Some(n) => deliver(r, n, &m.path("deliver"), &context, refs),
        None => {
            r.error(
                node,
                &m.path("deliver"),
                "missing: name where events go, e.g. `deliver: [ { target: billing } ]`",
            );
            Vec::new()
        }
    };
    if mode == Some(Mode::Sync)
        && let Some(n) = m.get("deliver")
    {
        let p = m.path("deliver");
        if deliver.len() > 1 {
            r.error(n, &p, "`mode: sync` forwards to exactly one target and relays its answer: keep one `deliver` entry");
        }
        if deliver.iter().any(|d| !d.events.is_empty()) {
            r.error(n, &p, "`events` filters do not apply to `mode: sync` (every request is forwarded): remove `events`");
        }
        if deliver.iter().any(|d| !d.versions.is_empty()) {
            r.error(n, &p, "`versions` filters do not apply to `mode: sync` (every request is forwarded): remove `versions`");
        }
    }
    m.finish(r);
    let (name, route_path) = (name?, route_path?);
    let shown = Shown {
        name: name.to_string(),
        path: route_path.to_string(),
    };
    Some((
        Route {
            name: name.value,
            path: route_path.value,
            methods,
            host,
            mode: mode?,
            allow_ips,
            max_body: max_body?,
            verify,
            event,
            deliver,
            version,
            dedup_window: dedup_window?,
        },
        shown,
    ))
}

/// `event: { type: "header:NAME" | "body:/pointer", id: … }` over the scheme's defaults.
fn event_override(r: &mut Reader<'_>, node: &Node<'_>, path: &str, spec: &mut crate::event::Spec) {
    let Some(mut m) = r.map(node, path) else {
        return;
    };
    for (key, slot) in [("type", &mut spec.kind), ("id", &mut spec.id)] {
        if let Some(n) = m.get(key) {
            let p = m.path(key);
            if let Some(t) = r.non_empty(n, &p, "the source") {
                match crate::event::Source::parse(t.value.trim()) {
                    Ok(source) => *slot = Some(source),
                    Err(why) => r.error(n, &p, format!("{t} {why}")),
                }
            }
        }
    }
    m.finish(r);
}

fn verify(r: &mut Reader<'_>, node: &Node<'_>, path: &str, defaults: &Defaults) -> Option<Verify> {
    let mut m = r.map(node, path)?;
    let scheme = required(
        r,
        &mut m,
        node,
        "scheme",
        "the signature scheme, e.g. `scheme: stripe`",
    )
    .and_then(|(n, p)| {
        let t = r.non_empty(n, &p, "the scheme")?;
        let found = SchemeName::from_name(t.value.trim());
        if found.is_none() {
            let names: Vec<&str> = SchemeName::ALL.iter().map(|(n, _)| *n).collect();
            let hint = super::yaml::closest(t.value.trim(), &names)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            r.error(
                n,
                &p,
                format!(
                    "{t} is not a signature scheme: {hint}use one of {}",
                    names.join(", ")
                ),
            );
        }
        found
    });
    let secrets = required(
        r,
        &mut m,
        node,
        "secrets",
        "the signing secrets, e.g. `secrets: [\"${env:STRIPE_SECRET}\"]`",
    )
    .map(|(n, p)| {
        let items = r.seq(n, &p);
        if items.is_empty() && matches!(&n.data, saphyr::YamlData::Sequence(_)) {
            r.error(n, &p, "is empty: give at least one secret");
        }
        items
            .into_iter()
            .filter_map(|(item, ip)| {
                r.non_empty(item, &ip, "a secret")
                    .map(|t| (Secret::new(t.value), location(item), ip))
            })
            .collect::<Vec<_>>()
    });
    let tolerance = match m.get("tolerance") {
        Some(n) => r.duration(n, &m.path("tolerance")),
        None => defaults.tolerance,
    };
    let mut options = crate::verify::Options::default();
    if let Some(n) = m.get("legacy_sha1") {
        let p = m.path("legacy_sha1");
        match &n.data {
            saphyr::YamlData::Value(saphyr::Scalar::Boolean(b)) => options.legacy_sha1 = *b,
            _ => r.error(n, &p, "expected `true` or `false`"),
        }
        if scheme.is_some_and(|s| s != SchemeName::Github) {
            r.error(n, &p, "`legacy_sha1` applies to `scheme: github` only");
        }
    }
    verify_options(r, &mut m, scheme, &mut options);
    let url = m.get("url").and_then(|n| {
        r.non_empty(n, &m.path("url"), "the public URL")
            .map(|t| t.value)
    });
    if url.is_none() && matches!(scheme, Some(SchemeName::Square | SchemeName::Twilio)) {
        r.error(node, &m.path("url"), "missing: this scheme signs the URL, so give it exactly as registered with the provider, e.g. `url: https://hooks.example.com/hooks/square` (behind a proxy hookrouter cannot rebuild it)");
    }
    m.finish(r);
    let (scheme, secrets) = (scheme?, secrets?);
    // Secrets are checked against the scheme (encodings, key types) here, so `check` reports
    // them; the message never contains the secret.
    let raw: Vec<&str> = secrets.iter().map(|(s, _, _)| s.expose()).collect();
    if !raw.is_empty()
        && let Err(bad) = crate::verify::Verifier::new(scheme, &raw, tolerance, &options)
    {
        for o in &bad.options {
            // Options are named by field; `generic` is the group of generic-hmac keys.
            let key = if o.option == "generic" {
                "algorithm"
            } else {
                o.option
            };
            r.error_at(None, &format!("{path}.{key}"), o.message.clone());
        }
        for b in bad.secrets {
            let (loc, p) = secrets
                .get(b.index)
                .map_or((None, format!("{path}.secrets")), |(_, l, p)| {
                    (*l, p.clone())
                });
            r.error_at(
                loc,
                &p,
                format!("this {} secret {}", scheme.name(), b.message),
            );
        }
        return None;
    }
    Some(Verify {
        scheme,
        secrets: secrets.into_iter().map(|(s, _, _)| s).collect(),
        tolerance,
        options,
        url,
    })
}

/// The scheme-specific keys of a `verify` block: `gitlab`, `header` and the generic-hmac keys.
fn verify_options(
    r: &mut Reader<'_>,
    m: &mut Map<'_>,
    scheme: Option<SchemeName>,
    options: &mut crate::verify::Options,
) {
    use crate::verify::{GenericHmac, GitlabMode, HmacAlgorithm, SignatureEncoding};
    let text = |r: &mut Reader<'_>, m: &mut Map<'_>, key: &'static str| {
        let p = m.path(key);
        m.get(key)
            .and_then(|n| r.non_empty(n, &p, key).map(|t| (t.value, n.span, p)))
    };
    if let Some((v, _, p)) = text(r, m, "gitlab") {
        match GitlabMode::from_name(&v) {
            Some(mode) => options.gitlab = mode,
            None => r.error_at(
                None,
                &p,
                format!("`{v}` is not a GitLab mode: use `token` or `signing-token`"),
            ),
        }
    }
    options.header = text(r, m, "header").map(|(v, _, _)| v);
    let algorithm = text(r, m, "algorithm");
    let encoding = text(r, m, "encoding");
    let prefix = text(r, m, "prefix");
    let template = text(r, m, "template");
    let id_header = text(r, m, "id_header");
    let timestamp_header = text(r, m, "timestamp_header");
    let any_generic = algorithm.is_some()
        || encoding.is_some()
        || prefix.is_some()
        || template.is_some()
        || id_header.is_some()
        || timestamp_header.is_some();
    if scheme != Some(SchemeName::GenericHmac) {
        if any_generic {
            r.error_at(None, &m.path("algorithm"), "`algorithm`, `encoding`, `prefix`, `template`, `id_header` and `timestamp_header` apply to `scheme: generic-hmac` only");
        }
        return;
    }
    let alg = match &algorithm {
        None => {
            r.error_at(
                None,
                &m.path("algorithm"),
                "missing: `algorithm: sha1`, `sha256` or `sha512`",
            );
            None
        }
        Some((v, _, p)) => HmacAlgorithm::from_name(v).or_else(|| {
            r.error_at(
                None,
                p,
                format!("`{v}` is not an algorithm: use `sha1`, `sha256` or `sha512`"),
            );
            None
        }),
    };
    let enc = match &encoding {
        None => {
            r.error_at(
                None,
                &m.path("encoding"),
                "missing: `encoding: hex` or `base64`",
            );
            None
        }
        Some((v, _, p)) => SignatureEncoding::from_name(v).or_else(|| {
            r.error_at(
                None,
                p,
                format!("`{v}` is not an encoding: use `hex` or `base64`"),
            );
            None
        }),
    };
    if let (Some(alg), Some(enc)) = (alg, enc) {
        let mut g = GenericHmac::new(alg, enc);
        if let Some((v, _, _)) = prefix {
            g.prefix = v;
        }
        if let Some((v, _, _)) = template {
            g.template = v;
        }
        g.id_header = id_header.map(|(v, _, _)| v);
        g.timestamp_header = timestamp_header.map(|(v, _, _)| v);
        options.generic = Some(g);
    }
}

fn methods(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Vec<Method> {
    let mut out = Vec::new();
    for (t, loc, p) in r.texts(node, path) {
        let s = t.value.trim();
        let valid = !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase());
        match Method::from_bytes(s.as_bytes()) {
            Ok(m) if valid => {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            _ => r.error_at(
                loc,
                &p,
                format!("{t} is not an HTTP method: write it in capitals, e.g. `POST`"),
            ),
        }
    }
    if out.is_empty() && matches!(&node.data, saphyr::YamlData::Sequence(s) if s.is_empty()) {
        r.error(
            node,
            path,
            "is empty: list at least one method, or remove `methods` for the default `[POST]`",
        );
    }
    out
}

/// A reference to a target (`deliver[].target`, `alerts.rules[].target`) or a route
/// (`alerts.rules[].route`) by name, kept with its position until all names are known.
struct Reference {
    name: String,
    shown: String,
    location: Option<super::Location>,
    path: String,
}

/// What a route's `deliver` entries are checked against.
struct DeliverContext {
    /// The route's mode, when valid.
    mode: Option<Mode>,
    /// Whether the route has a `version` block.
    has_version: bool,
    /// Whether the route knows where its events' type is (or cannot tell yet).
    has_type: bool,
}

fn deliver(
    r: &mut Reader<'_>,
    node: &Node<'_>,
    path: &str,
    context: &DeliverContext,
    refs: &mut Vec<Reference>,
) -> Vec<Deliver> {
    let items = r.seq(node, path);
    if items.is_empty() && matches!(&node.data, saphyr::YamlData::Sequence(_)) {
        r.error(
            node,
            path,
            "is empty: name at least one target, e.g. `deliver: [ { target: billing } ]`",
        );
    }
    let is_async = context.mode == Some(Mode::Async);
    let mut out = Vec::new();
    // Targets named so far in this route, with where.
    let mut seen: Vec<(String, String)> = Vec::new();
    for (n, p) in items {
        let Some(mut m) = r.map(n, &p) else { continue };
        let target = required(r, &mut m, n, "target", "the target name from `targets:`").and_then(
            |(tn, tp)| {
                r.non_empty(tn, &tp, "the target name")
                    .map(|t| (t, location(tn), tp))
            },
        );
        let events = match m.get("events") {
            Some(en) => {
                let ep = m.path("events");
                if is_async && !context.has_type {
                    r.error(en, &ep, "`events` filters need the event type, and this route does not say where it is: add `event: { type: \"body:/type\" }` (or `\"header:NAME\"`), or remove `events`");
                }
                globs(
                    r,
                    en,
                    &ep,
                    "an event type pattern",
                    "list event types (`*` matches any text), or remove `events` to deliver every event",
                )
            }
            None => Vec::new(),
        };
        let versions = match m.get("versions") {
            Some(vn) => {
                let vp = m.path("versions");
                // Sync routes get one message for the whole `deliver` (see `route`).
                if is_async && !context.has_version {
                    r.error(vn, &vp, "`versions` filters need the route's `version` block to know where the version is: add e.g. `version: { from: \"body:/api_version\" }` to the route, or remove `versions`");
                }
                versions(r, vn, &vp)
            }
            None => Vec::new(),
        };
        m.finish(r);
        if let Some((target, loc, tp)) = target {
            match seen.iter().find(|(name, _)| *name == target.value) {
                Some((_, first)) => r.error_at(
                    loc,
                    &tp,
                    format!("target {target} is also in {first}: list each target once (one entry's `events` can hold several patterns)"),
                ),
                None => seen.push((target.value.clone(), p.clone())),
            }
            refs.push(Reference {
                name: target.value.clone(),
                shown: target.to_string(),
                location: loc,
                path: tp,
            });
            out.push(Deliver {
                target: target.value,
                events,
                versions,
            });
        }
    }
    out
}

/// A list of patterns where `*` matches any run of characters; each must be non-empty, and an
/// empty list is refused (it would match nothing, or be mistaken for "everything").
fn globs(r: &mut Reader<'_>, node: &Node<'_>, path: &str, what: &str, hint: &str) -> Vec<String> {
    let out: Vec<String> = r
        .seq(node, path)
        .into_iter()
        .filter_map(|(item, p)| r.non_empty(item, &p, what))
        .map(|t| t.value.trim().to_string())
        .collect();
    if matches!(&node.data, saphyr::YamlData::Sequence(s) if s.is_empty()) {
        r.error(node, path, format!("is empty: {hint}"));
    }
    out
}

/// Version patterns (`versions`, `version.accept`): as [`globs`], and numbers are refused
/// because YAML reads `1.0` as the number 1 and the text would no longer match.
fn versions(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Vec<String> {
    if let saphyr::YamlData::Sequence(items) = &node.data {
        for (i, item) in items.iter().enumerate() {
            unquoted_number(r, item, &format!("{path}[{i}]"));
        }
    }
    globs(
        r,
        node,
        path,
        "a version pattern",
        "list versions (`*` matches any text), or remove the key to take every version",
    )
}

/// Reports a version written as an unquoted decimal number (YAML turns `1.10` into 1.1).
fn unquoted_number(r: &mut Reader<'_>, node: &Node<'_>, path: &str) {
    if let saphyr::YamlData::Value(saphyr::Scalar::FloatingPoint(f)) = &node.data {
        r.error(
            node,
            path,
            format!("YAML reads this unquoted value as the number {f}, which may not be the text written (`1.10` is 1.1): put the version in quotes, e.g. `\"1.10\"`"),
        );
    }
}

/// `version: { from, accept, default, on_unknown, header }`.
fn version(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<VersionSpec> {
    let mut m = r.map(node, path)?;
    let from = required(
        r,
        &mut m,
        node,
        "from",
        "where the version is, e.g. `from: \"body:/api_version\"` or `from: \"header:Stripe-Version\"`",
    )
    .and_then(|(n, p)| {
        let t = r.non_empty(n, &p, "the source")?;
        Source::parse(t.value.trim())
            .map_err(|why| r.error(n, &p, format!("{t} {why}")))
            .ok()
    });
    let accept = match m.get("accept") {
        Some(n) => versions(r, n, &m.path("accept")),
        None => Vec::new(),
    };
    let default: Option<(Text, &Node<'_>)> = m.get("default").and_then(|n| {
        let p = m.path("default");
        unquoted_number(r, n, &p);
        r.non_empty(n, &p, "the default version").map(|t| (t, n))
    });
    let on_unknown = match m.get("on_unknown") {
        Some(n) => {
            let p = m.path("on_unknown");
            match r.text(n, &p) {
                Some(t) if t.value.trim() == "reject" => Some(OnUnknown::Reject),
                Some(t) if t.value.trim() == "deliver" => Some(OnUnknown::Deliver),
                Some(t) => {
                    r.error(
                        n,
                        &p,
                        format!("{t} is not an `on_unknown` action: use `reject` (answer 400) or `deliver`"),
                    );
                    None
                }
                None => None,
            }
        }
        None => Some(OnUnknown::Reject),
    };
    let header = match m.get("header") {
        Some(n) => {
            let p = m.path("header");
            r.non_empty(n, &p, "the header name").and_then(|t| {
                HeaderName::from_bytes(t.value.trim().as_bytes())
                    .map_err(|_| {
                        r.error(
                            n,
                            &p,
                            format!("{t} is not a header name: use letters, digits and `-`, e.g. `Webhook-Version`"),
                        )
                    })
                    .ok()
            })
        }
        None => Some(HeaderName::from_static(DEFAULT_VERSION_HEADER)),
    };
    if let Some((t, n)) = &default {
        let d = t.value.trim();
        if !accept.is_empty() && !accept.iter().any(|g| crate::glob::matches(g, d)) {
            r.error(
                n,
                &m.path("default"),
                format!("{t} is not matched by `accept`, so events without a version would always be unknown: add it to `accept` or change `default`"),
            );
        }
    }
    m.finish(r);
    Some(VersionSpec {
        from: from?,
        accept,
        default: default.map(|(t, _)| t.value.trim().to_string()),
        on_unknown: on_unknown?,
        header: header?,
    })
}

/// `alerts: { evaluate_every, repeat, rules, notify }`. Rules' `target` and `route` names go to
/// `target_refs` and `route_refs`, checked once all names are known.
fn alerts(
    r: &mut Reader<'_>,
    node: &Node<'_>,
    path: &str,
    target_refs: &mut Vec<Reference>,
    route_refs: &mut Vec<Reference>,
) -> Alerts {
    let mut a = Alerts::default();
    let Some(mut m) = r.map(node, path) else {
        return a;
    };
    for (key, slot) in [
        ("evaluate_every", &mut a.evaluate_every),
        ("repeat", &mut a.repeat),
    ] {
        if let Some(d) = m
            .get(key)
            .and_then(|n| positive_duration(r, n, &m.path(key)))
        {
            *slot = d;
        }
    }
    if let Some(n) = m.get("rules") {
        // Rule names so far, with the path of the rule that has it.
        let mut seen: Vec<(String, String)> = Vec::new();
        for (rn, rp) in r.seq(n, &m.path("rules")) {
            if let Some(rule) = alert_rule(r, rn, &rp, &mut seen, target_refs, route_refs) {
                a.rules.push(rule);
            }
        }
    }
    if let Some(n) = m.get("notify") {
        a.notify = r
            .seq(n, &m.path("notify"))
            .into_iter()
            .filter_map(|(n, p)| notify(r, n, &p))
            .collect();
    }
    m.finish(r);
    a
}

/// One `alerts.rules[]` entry: `{ name, when, for, window, baseline, min_events, route, target,
/// severity }`.
fn alert_rule(
    r: &mut Reader<'_>,
    node: &Node<'_>,
    path: &str,
    seen: &mut Vec<(String, String)>,
    target_refs: &mut Vec<Reference>,
    route_refs: &mut Vec<Reference>,
) -> Option<AlertRule> {
    let mut m = r.map(node, path)?;
    let name = required(
        r,
        &mut m,
        node,
        "name",
        "a unique rule name, e.g. `name: billing-failing`",
    )
    .and_then(|(n, p)| {
        let t = r.non_empty(n, &p, "the rule name")?;
        if !valid_name(&t.value) {
            r.error(
                n,
                &p,
                format!("{t} is not a valid rule name: use letters, digits, `-` and `_`"),
            );
            return None;
        }
        match seen.iter().find(|(name, _)| *name == t.value) {
            Some((_, first)) => r.error(
                n,
                &p,
                format!("rule name {t} is also used by {first}: names must be unique"),
            ),
            None => seen.push((t.value.clone(), path.to_string())),
        }
        Some(t.value)
    });
    let when = required(
        r,
        &mut m,
        node,
        "when",
        &format!("the condition, e.g. {WHEN_EXAMPLE}"),
    )
    .and_then(|(n, p)| condition(r, n, &p));
    let signal = when.map(|(s, _, _)| s);
    let hold = match m.get("for") {
        Some(n) => r.duration(n, &m.path("for")),
        None => Some(Duration::ZERO),
    };
    let window = match m.get("window") {
        Some(n) => positive_duration(r, n, &m.path("window")),
        None => Some(DEFAULT_ALERT_WINDOW),
    };
    let baseline = match m.get("baseline") {
        Some(n) => {
            let p = m.path("baseline");
            let d = positive_duration(r, n, &p);
            if let Some(s) = signal.filter(|s| *s != Signal::TrafficRatio) {
                r.error(
                    n,
                    &p,
                    format!(
                        "`baseline` applies to `traffic_ratio` only, not `{}`: remove it",
                        s.as_str()
                    ),
                );
            }
            d
        }
        None => Some(DEFAULT_ALERT_BASELINE),
    };
    let min_events = match m.get("min_events") {
        Some(n) => {
            let p = m.path("min_events");
            let v = r.integer(n, &p, 0..=MAX_ALERT_MIN_EVENTS);
            if let Some(s) =
                signal.filter(|s| !matches!(s, Signal::DeliveryFailureRatio | Signal::TrafficRatio))
            {
                r.error(
                    n,
                    &p,
                    format!(
                        "`min_events` applies to the ratios `delivery_failure_ratio` and `traffic_ratio` only, not `{}`: remove it",
                        s.as_str()
                    ),
                );
            }
            v
        }
        None => Some(DEFAULT_ALERT_MIN_EVENTS),
    };
    let route = m
        .get("route")
        .and_then(|n| scope(r, n, &m.path("route"), Scope::Route, signal, route_refs));
    let target = m
        .get("target")
        .and_then(|n| scope(r, n, &m.path("target"), Scope::Target, signal, target_refs));
    let severity = match m.get("severity") {
        Some(n) => {
            let p = m.path("severity");
            r.text(n, &p).and_then(|t| {
                let v = t.value.trim();
                if let Some(s) = SEVERITIES.iter().find(|s| **s == v) {
                    return Some(s.to_string());
                }
                r.error(
                    n,
                    &p,
                    format!("{t} is not a severity: use `info`, `warning` or `critical`"),
                );
                None
            })
        }
        None => Some(SEVERITIES[1].to_string()),
    };
    m.finish(r);
    let (signal, op, threshold) = when?;
    Some(AlertRule {
        name: name?,
        signal,
        op,
        threshold,
        hold: hold?,
        window: window?,
        baseline: baseline?,
        min_events: min_events?,
        route,
        target,
        severity: severity?,
    })
}

/// A rule's `when: "<signal> <op> <number>"`.
fn condition(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<(Signal, Comparison, f64)> {
    let t = r.non_empty(node, path, "the condition")?;
    // A part of the condition as quoted in messages; a referenced value is named, not shown.
    let quote = |part: &str| {
        if t.is_referenced() {
            t.to_string()
        } else {
            format!("`{part}`")
        }
    };
    let parts: Vec<&str> = t.value.split_whitespace().collect();
    let [signal, op, number] = parts[..] else {
        r.error(
            node,
            path,
            format!("{t} is not a condition: write `<signal> <op> <number>` separated by spaces, e.g. {WHEN_EXAMPLE}"),
        );
        return None;
    };
    let signal = match Signal::from_name(signal) {
        Some(s) => Some(s),
        None => {
            let names: Vec<&str> = Signal::ALL.iter().map(|s| s.as_str()).collect();
            let hint = super::yaml::closest(signal, &names)
                .filter(|_| !t.is_referenced())
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            r.error(
                node,
                path,
                format!(
                    "{} is not a signal: {hint}use one of {}",
                    quote(signal),
                    names.join(", ")
                ),
            );
            None
        }
    };
    let op = match Comparison::from_symbol(op) {
        Some(c) => Some(c),
        None => {
            r.error(
                node,
                path,
                format!(
                    "{} is not a comparison: use `>`, `>=`, `<` or `<=`, e.g. {WHEN_EXAMPLE}",
                    quote(op)
                ),
            );
            None
        }
    };
    let threshold = match number.parse::<f64>() {
        Ok(v) if v.is_finite() => Some(v),
        _ => {
            r.error(
                node,
                path,
                format!(
                    "{} is not a number: write the threshold as a plain decimal number, e.g. {WHEN_EXAMPLE} (ratios are fractions: 0.05 is 5%)",
                    quote(number)
                ),
            );
            None
        }
    };
    Some((signal?, op?, threshold?))
}

/// Which of a rule's narrowing keys is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Route,
    Target,
}

/// A rule's `route` or `target`, when the rule's signal is measured that way (or is broken, so
/// cannot tell); the name is checked to exist once all are known.
fn scope(
    r: &mut Reader<'_>,
    node: &Node<'_>,
    path: &str,
    scope: Scope,
    signal: Option<Signal>,
    refs: &mut Vec<Reference>,
) -> Option<String> {
    let (key, other, applies): (&str, &str, fn(Signal) -> bool) = match scope {
        Scope::Route => ("route", "target", Signal::per_route),
        Scope::Target => ("target", "route", Signal::per_target),
    };
    let t = r.non_empty(node, path, &format!("the {key} name"))?;
    if let Some(signal) = signal
        && !applies(signal)
    {
        let fits_other = match scope {
            Scope::Route => signal.per_target(),
            Scope::Target => signal.per_route(),
        };
        let message = if fits_other {
            format!(
                "`{}` is measured per {other}, not per {key}: use `{other}: NAME` to narrow it, or remove `{key}`",
                signal.as_str()
            )
        } else {
            let narrowed: Vec<&str> = Signal::ALL
                .into_iter()
                .filter(|s| applies(*s))
                .map(Signal::as_str)
                .collect();
            let (last, rest) = narrowed.split_last().unwrap_or((&"", &[]));
            format!(
                "`{}` is not measured per {key}: remove `{key}` (only {} and {last} are)",
                signal.as_str(),
                rest.join(", ")
            )
        };
        r.error(node, path, message);
        return None;
    }
    refs.push(Reference {
        name: t.value.clone(),
        shown: t.to_string(),
        location: location(node),
        path: path.to_string(),
    });
    Some(t.value)
}

/// One `alerts.notify[]` receiver: `{ url, format, timeout }`.
fn notify(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<Notify> {
    let mut m = r.map(node, path)?;
    let url = required(
        r,
        &mut m,
        node,
        "url",
        "where notifications are sent, e.g. `url: \"${env:SLACK_WEBHOOK_URL}\"`",
    )
    .and_then(|(n, p)| notify_url(r, n, &p));
    let format = match m.get("format") {
        Some(n) => {
            let p = m.path("format");
            r.text(n, &p).and_then(|t| {
                let f = NotifyFormat::from_name(t.value.trim());
                if f.is_none() {
                    r.error(
                        n,
                        &p,
                        format!("{t} is not a notification format: use `json`, `slack` or `alertmanager`"),
                    );
                }
                f
            })
        }
        None => Some(NotifyFormat::Json),
    };
    let timeout = match m.get("timeout") {
        Some(n) => positive_duration(r, n, &m.path("timeout")),
        None => Some(DEFAULT_NOTIFY_TIMEOUT),
    };
    m.finish(r);
    Some(Notify {
        url: url?,
        format: format?,
        timeout: timeout?,
    })
}

/// A notification URL. It may carry a token (Slack webhook URLs do), so messages never show
/// it, even when written inline; a referenced one is named by its reference.
fn notify_url(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<Uri> {
    let t = r.non_empty(node, path, "the notification URL")?;
    let subject = if t.is_referenced() {
        format!("{t} ")
    } else {
        String::new()
    };
    let absolute =
        |u: &Uri| matches!(u.scheme_str(), Some("http") | Some("https")) && u.host().is_some();
    let Some(uri) = t.value.trim().parse::<Uri>().ok().filter(absolute) else {
        r.error(
            node,
            path,
            format!("{subject}must be an absolute `http://` or `https://` URL with a host, e.g. `https://hooks.slack.com/services/…` (the value is not shown: notification URLs can carry a token)"),
        );
        return None;
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        r.error(
            node,
            path,
            "credentials in the notification URL are not supported: the URL must not contain `user@`",
        );
        return None;
    }
    Some(uri)
}

fn check_listeners(r: &mut Reader<'_>, listen: &[(usize, Listen, String)], admin: Option<&Admin>) {
    let mut seen: HashMap<std::net::SocketAddr, usize> = HashMap::new();
    for (i, l, shown) in listen {
        if let Some(first) = seen.get(&l.addr) {
            r.error_at(
                None,
                &format!("listen[{i}].addr"),
                format!(
                    "{shown} is also used by listen[{first}]: each listener needs its own address"
                ),
            );
        } else {
            seen.insert(l.addr, *i);
        }
    }
    if let Some(a) = admin
        && let Some(i) = seen.get(&a.addr)
    {
        r.error_at(
                None,
                "admin.addr",
                format!("the admin address is also used by listen[{i}]: the admin listener needs its own address"),
            );
    }
}

/// Reports each reference to a `what` (`target`) that is not among the names under
/// `section:` (`targets`).
fn check_references(
    r: &mut Reader<'_>,
    what: &str,
    section: &str,
    names: &[String],
    refs: Vec<Reference>,
) {
    for Reference {
        name,
        shown,
        location: loc,
        path,
    } in refs
    {
        if !names.contains(&name) {
            let known: Vec<&str> = names.iter().map(String::as_str).collect();
            let hint = if known.is_empty() {
                format!("no {section} are defined: add it under `{section}:`")
            } else {
                format!(
                    "define it under `{section}:` or use one of: {}",
                    known.join(", ")
                )
            };
            r.error_at(loc, &path, format!("unknown {what} {shown}: {hint}"));
        }
    }
}

fn check_routes(r: &mut Reader<'_>, routes: &[Placed<Route>]) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (k, placed) in routes.iter().enumerate() {
        let (route, i, loc) = (&placed.item, placed.index, &placed.location);
        if let Some(first) = names.get(route.name.as_str()) {
            r.error_at(
                *loc,
                &format!("routes[{i}].name"),
                format!(
                    "route name {} is also used by routes[{first}]: names must be unique",
                    placed.shown.name
                ),
            );
        } else {
            names.insert(route.name.as_str(), i);
        }
        for earlier in &routes[..k] {
            let (other, j) = (&earlier.item, earlier.index);
            let same_place = other.path == route.path && other.host == route.host;
            let shared: Vec<&str> = route
                .methods
                .iter()
                .filter(|m| other.methods.contains(m))
                .map(Method::as_str)
                .collect();
            if same_place && !shared.is_empty() {
                r.error_at(
                    *loc,
                    &format!("routes[{i}]"),
                    format!(
                        "{} takes {} on path {}{} like routes[{j}] ({}): give one of them another path, host or methods",
                        placed.shown.name,
                        shared.join(", "),
                        placed.shown.path,
                        if route.host.is_some() { " and the same host" } else { "" },
                        earlier.shown.name
                    ),
                );
            }
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use super::show;
    use crate::config::{
        AlertRule, Alerts, Comparison, Config, Embedded, Mode, NotifyFormat, OnUnknown, Queue,
        Retry, Signal,
    };

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn load(src: &str) -> Config {
        let env = |name: &str| (name == "SIGNING_SECRET").then(|| SECRET.to_string());
        crate::config::from_str(
            src,
            Path::new("/etc/hookrouter/router.yaml"),
            Path::new("/etc/hookrouter"),
            &env,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const MINIMAL: &str = r#"
listen: [{ addr: "127.0.0.1:8080" }]
targets: { billing: { url: "http://127.0.0.1:7001/hooks" } }
routes:
  - { name: stripe, path: /hooks/stripe, verify: { scheme: stripe, secrets: [whsec_x] }, deliver: [{ target: billing }] }
"#;

    #[test]
    fn async_is_the_default_and_every_new_key_has_its_default() {
        let c = load(MINIMAL);
        let h = |hours: u64| Duration::from_secs(hours * 3600);
        assert_eq!(c.defaults.dedup_window, h(24));
        assert_eq!(
            c.queue,
            Queue::Embedded(Embedded {
                path: Path::new("/etc/hookrouter").join("./data"),
                retention: h(72),
                dead_retention: h(14 * 24),
                max_size: 10 << 30,
            })
        );
        let t = &c.targets["billing"];
        assert_eq!(t.max_in_flight, 32);
        assert_eq!(t.retry, Retry::default());
        assert_eq!(t.sign, None);
        let r = &c.routes[0];
        assert_eq!(r.mode, Mode::Async);
        assert!(r.version.is_none());
        assert_eq!(r.dedup_window, h(24));
        assert!(r.deliver[0].events.is_empty() && r.deliver[0].versions.is_empty());
    }

    #[test]
    fn nats_queue_keys_are_read_and_urls_stay_out_of_debug() {
        let base = MINIMAL.replace(
            "targets:",
            "queue: { nats: { url: [\"nats://u:p4ss@10.0.0.1:4222\", \"tls://n2:4222\"], stream: HR-1, replicas: 3, ack_wait: 5s, duplicate_window: 2h, retention: 2d, dead_retention: 3d, max_size: 1GiB } }\ntargets:",
        );
        let c = load(&base);
        let Queue::Nats(n) = &c.queue else {
            panic!("expected the NATS queue, got {:?}", c.queue);
        };
        assert_eq!(
            n.urls,
            ["nats://u:p4ss@10.0.0.1:4222", "tls://n2:4222"].map(String::from)
        );
        assert_eq!(n.stream, "HR-1");
        assert_eq!(n.replicas, 3);
        assert_eq!(n.ack_wait, Duration::from_secs(5));
        assert_eq!(n.duplicate_window, Some(Duration::from_secs(7200)));
        assert_eq!(n.retention, Duration::from_secs(2 * 86_400));
        assert_eq!(n.dead_retention, Duration::from_secs(3 * 86_400));
        assert_eq!(n.max_size, 1 << 30);
        let debug = format!("{:?}", c.queue);
        assert!(
            !debug.contains("p4ss") && debug.contains("10.0.0.1:4222"),
            "{debug}"
        );

        let single = load(&MINIMAL.replace(
            "targets:",
            "queue: { nats: { url: \"nats://127.0.0.1:4222\" } }\ntargets:",
        ));
        let Queue::Nats(n) = &single.queue else {
            panic!("expected the NATS queue");
        };
        assert_eq!(
            n,
            &crate::config::Nats::at(vec!["nats://127.0.0.1:4222".into()])
        );

        for (bad, expect) in [
            ("{ nats: { url: \"http://x:4222\" } }", "nats://host:port"),
            ("{ nats: { url: [] } }", "at least one"),
            ("{ nats: { url: \"nats://x\", replicas: 2 } }", "odd number"),
            (
                "{ nats: { url: \"nats://x\", ack_wait: 100ms } }",
                "at least 1s",
            ),
            (
                "{ nats: { url: \"nats://x\", stream: \"a.b\" } }",
                "stream name",
            ),
            ("{ nats: { stream: x } }", "missing `url`"),
            ("{ nats: { url: \"nats://x\", bogus: 1 } }", "bogus"),
        ] {
            let src = MINIMAL.replace("targets:", &format!("queue: {bad}\ntargets:"));
            let err = crate::config::from_str(
                &src,
                Path::new("/etc/hookrouter/router.yaml"),
                Path::new("/etc/hookrouter"),
                &|_: &str| None,
            )
            .expect_err(bad)
            .to_string();
            assert!(err.contains(expect), "{bad}: {err}");
        }
    }

    #[test]
    fn every_new_key_is_read() {
        let c = load(
            r#"
listen: [{ addr: "127.0.0.1:8080" }]
defaults: { dedup_window: 1h }
queue: { embedded: { path: /var/lib/hookrouter, retention: 2d, dead_retention: 1d, max_size: 2GiB } }
targets:
  billing:
    url: "http://127.0.0.1:7001/hooks"
    max_in_flight: 4
    retry: { max_attempts: 3, initial: 2s, max_delay: 1m, max_age: 6h }
    sign: { scheme: standard-webhooks, secret: "${env:SIGNING_SECRET}" }
  audit: { url: "http://127.0.0.1:7002/hooks", retry: { max_delay: 5s } }
routes:
  - name: stripe
    path: /hooks/stripe
    mode: async
    dedup_window: 0s
    verify: { scheme: stripe, secrets: [whsec_x] }
    version: { from: "body:/api_version", accept: ["2024-*", "2025-01-01"], default: "2024-06-20", on_unknown: deliver, header: Stripe-Version }
    deliver:
      - { target: billing, events: ["invoice.*", " customer.created "], versions: ["2024-*"] }
      - { target: audit }
  - { name: other, path: /hooks/other, verify: { scheme: stripe, secrets: [whsec_x] }, deliver: [{ target: audit }] }
"#,
        );
        assert_eq!(c.defaults.dedup_window, Duration::from_secs(3600));
        assert_eq!(
            c.queue,
            Queue::Embedded(Embedded {
                path: "/var/lib/hookrouter".into(),
                retention: Duration::from_secs(2 * 86_400),
                dead_retention: Duration::from_secs(86_400),
                max_size: 2 << 30,
            })
        );
        let t = &c.targets["billing"];
        assert_eq!(t.max_in_flight, 4);
        assert_eq!(
            t.retry,
            Retry {
                max_attempts: 3,
                initial: Duration::from_secs(2),
                max_delay: Duration::from_secs(60),
                max_age: Duration::from_secs(6 * 3600),
            }
        );
        assert_eq!(
            t.sign.as_ref().map(|s| s.secret.expose()),
            Some(SECRET),
            "the secret is kept as written, after the reference"
        );
        let audit = &c.targets["audit"].retry;
        assert_eq!(audit.max_delay, Duration::from_secs(5));
        assert_eq!(audit.initial, Retry::default().initial);

        let r = &c.routes[0];
        assert_eq!(r.mode, Mode::Async);
        assert_eq!(r.dedup_window, Duration::ZERO);
        let v = r.version.as_ref().expect("the version block");
        assert_eq!(v.from, crate::event::Source::Body("/api_version".into()));
        assert_eq!(v.accept, ["2024-*", "2025-01-01"]);
        assert_eq!(v.default.as_deref(), Some("2024-06-20"));
        assert_eq!(v.on_unknown, OnUnknown::Deliver);
        assert_eq!(v.header.as_str(), "stripe-version");
        assert_eq!(r.deliver[0].target, "billing");
        assert_eq!(r.deliver[0].events, ["invoice.*", "customer.created"]);
        assert_eq!(r.deliver[0].versions, ["2024-*"]);
        assert_eq!(r.deliver[1].target, "audit");
        assert!(r.deliver[1].events.is_empty() && r.deliver[1].versions.is_empty());
        // A route without its own window takes `defaults.dedup_window`.
        assert_eq!(c.routes[1].dedup_window, Duration::from_secs(3600));
    }

    #[test]
    fn a_version_block_defaults_to_reject_and_webhook_version() {
        let c = load(&MINIMAL.replace(
            "deliver:",
            r#"version: { from: "header:Stripe-Version" }, deliver:"#,
        ));
        let v = c.routes[0].version.as_ref().expect("the version block");
        assert_eq!(
            v.from,
            crate::event::Source::Header(http::HeaderName::from_static("stripe-version"))
        );
        assert!(v.accept.is_empty() && v.default.is_none());
        assert_eq!(v.on_unknown, OnUnknown::Reject);
        assert_eq!(v.header.as_str(), "webhook-version");
    }

    #[test]
    fn sign_errors_never_show_the_secret() {
        for secret in [
            "whsec_not*base64!",
            "whpk_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTE=",
        ] {
            let src = MINIMAL.replace(
                r#"url: "http://127.0.0.1:7001/hooks" }"#,
                &format!(
                    r#"url: "http://127.0.0.1:7001/hooks", sign: {{ scheme: standard-webhooks, secret: "{secret}" }} }}"#
                ),
            );
            let err = crate::config::from_str(&src, Path::new("r.yaml"), Path::new(""), &|_| None)
                .expect_err("an invalid signing secret")
                .to_string();
            assert!(err.contains("targets.billing.sign.secret: "), "{err}");
            assert!(!err.contains(&secret[6..]), "{err}");
        }
    }

    const SLACK_URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRETTOKEN";

    /// `MINIMAL` with `alerts`, read with `SLACK_URL` in `${env:SLACK_ALERTS_URL}`.
    fn load_alerts(alerts: &str) -> Result<Config, String> {
        let env = |name: &str| (name == "SLACK_ALERTS_URL").then(|| SLACK_URL.to_string());
        crate::config::from_str(
            &format!("{MINIMAL}{alerts}"),
            Path::new("r.yaml"),
            Path::new(""),
            &env,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn alerts_default_to_none_and_every_key_is_read() {
        assert_eq!(load(MINIMAL).alerts, Alerts::default());
        let d = Alerts::default();
        assert_eq!(d.evaluate_every, Duration::from_secs(10));
        assert_eq!(d.repeat, Duration::from_secs(4 * 3600));
        assert!(d.rules.is_empty() && d.notify.is_empty());

        let c = load_alerts(
            r#"
alerts:
  evaluate_every: 30s
  repeat: 1h
  rules:
    - { name: billing-failing, when: "delivery_failure_ratio > 0.05", for: 10m, window: 15m, min_events: 0, target: billing, severity: critical }
    - { name: stripe-quiet, when: "traffic_ratio <= 0.2", baseline: 2h, route: stripe }
    - { name: reload, when: "reload_failed >= 1" }
    - { name: cert, when: "certificate_expiry_days < 1e1", severity: info }
  notify:
    - { url: "${env:SLACK_ALERTS_URL}", format: slack, timeout: 2s }
    - { url: "http://alertmanager:9093/api/v2/alerts", format: alertmanager }
    - { url: "https://ops.example.com/hooks/alerts" }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let a = &c.alerts;
        assert_eq!(a.evaluate_every, Duration::from_secs(30));
        assert_eq!(a.repeat, Duration::from_secs(3600));
        assert_eq!(
            a.rules[0],
            AlertRule {
                name: "billing-failing".into(),
                signal: Signal::DeliveryFailureRatio,
                op: Comparison::Above,
                threshold: 0.05,
                hold: Duration::from_secs(600),
                window: Duration::from_secs(900),
                baseline: Duration::from_secs(3600),
                min_events: 0,
                route: None,
                target: Some("billing".into()),
                severity: "critical".into(),
            }
        );
        assert_eq!(
            a.rules[1],
            AlertRule {
                name: "stripe-quiet".into(),
                signal: Signal::TrafficRatio,
                op: Comparison::AtMost,
                threshold: 0.2,
                hold: Duration::ZERO,
                window: Duration::from_secs(300),
                baseline: Duration::from_secs(7200),
                min_events: 10,
                route: Some("stripe".into()),
                target: None,
                severity: "warning".into(),
            }
        );
        assert_eq!(
            (a.rules[2].signal, a.rules[2].op, a.rules[2].threshold),
            (Signal::ReloadFailed, Comparison::AtLeast, 1.0)
        );
        assert_eq!(
            (a.rules[3].signal, a.rules[3].op, a.rules[3].threshold),
            (Signal::CertificateExpiryDays, Comparison::Below, 10.0)
        );
        assert_eq!(a.rules[3].severity, "info");

        let n = &a.notify;
        assert_eq!(n.len(), 3);
        assert_eq!(
            n[0].url.to_string(),
            SLACK_URL,
            "the URL after the reference"
        );
        assert_eq!(
            (n[0].format, n[0].timeout),
            (NotifyFormat::Slack, Duration::from_secs(2))
        );
        assert_eq!(n[1].format, NotifyFormat::Alertmanager);
        assert_eq!(
            (n[2].format, n[2].timeout),
            (NotifyFormat::Json, Duration::from_secs(5))
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("XXXXSECRETTOKEN"), "{shown}");
        assert!(shown.contains("https://hooks.slack.com/***"), "{shown}");
    }

    #[test]
    fn every_signal_and_format_has_its_name() {
        for s in Signal::ALL {
            assert_eq!(Signal::from_name(s.as_str()), Some(s));
            assert!(!(s.per_route() && s.per_target()), "{s:?}");
        }
        let global = Signal::ALL
            .into_iter()
            .filter(|s| !s.per_route() && !s.per_target());
        assert_eq!(
            global.collect::<Vec<_>>(),
            [Signal::CertificateExpiryDays, Signal::ReloadFailed]
        );
        for f in [
            NotifyFormat::Json,
            NotifyFormat::Slack,
            NotifyFormat::Alertmanager,
        ] {
            assert_eq!(NotifyFormat::from_name(f.as_str()), Some(f));
        }
    }

    #[test]
    fn comparisons_hold() {
        let cases = [
            (Comparison::Above, [false, false, true]),
            (Comparison::AtLeast, [false, true, true]),
            (Comparison::Below, [true, false, false]),
            (Comparison::AtMost, [true, true, false]),
        ];
        for (op, want) in cases {
            assert_eq!(Comparison::from_symbol(op.as_str()), Some(op));
            let got = [0.5, 1.0, 1.5].map(|v| op.holds(v, 1.0));
            assert_eq!(got, want, "{op:?}");
            assert!(!op.holds(f64::NAN, 1.0), "{op:?} never holds for NaN");
        }
        assert!(Comparison::AtLeast.holds(0.0, 0.0));
        assert!(Comparison::Below.holds(-1.0, 0.0));
    }

    #[test]
    fn alert_errors_never_show_the_notify_url() {
        for url in [
            r#""${env:SLACK_ALERTS_URL}/x y""#,
            r#""ftp://hooks.slack.com/services/T000/B000/XXXXSECRETTOKEN""#,
            r#""hooks.slack.com/services/T000/B000/XXXXSECRETTOKEN""#,
        ] {
            let err = load_alerts(&format!("alerts: {{ notify: [{{ url: {url} }}] }}\n"))
                .expect_err("an invalid notify URL");
            assert!(err.contains("alerts.notify[0].url: "), "{err}");
            assert!(!err.contains("XXXXSECRETTOKEN"), "{err}");
        }
        let err = load_alerts(
            "alerts: { notify: [{ url: \"${env:SLACK_ALERTS_URL}\", timeout: 0s }] }\n",
        )
        .expect_err("a zero timeout");
        assert!(
            err.contains("alerts.notify[0].timeout: must be more than 0"),
            "{err}"
        );
        assert!(!err.contains("XXXXSECRETTOKEN"), "{err}");
    }

    #[test]
    fn durations_are_shown_as_written() {
        assert_eq!(show(Duration::from_secs(5)), "`5s`");
        assert_eq!(show(Duration::from_secs(90)), "`1m30s`");
        assert_eq!(show(Duration::from_secs(36_000)), "`10h`");
        assert_eq!(show(Duration::from_secs(86_400 + 1)), "`1d1s`");
        assert_eq!(show(Duration::from_millis(1500)), "`1s500ms`");
        assert_eq!(show(Duration::ZERO), "`0ms`");
    }
}
