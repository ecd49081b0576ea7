//! YAML tree → validated `Config`. Every check pushes its error and goes on, so one run reports
//! everything that is wrong. Per-value checks happen where the value is read (so they carry a
//! line and column); cross-field checks (references, conflicts) run after the walk.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Duration,
};

use http::{Method, Uri};

use super::{
    model::{
        Admin, CertKey, Config, Defaults, Deliver, Listen, Mode, Queue, Route, Secret, Server,
        Target, Verify,
    },
    yaml::{Map, Node, Reader, location},
};
use crate::{path, verify::SchemeName};

/// The config format this build reads.
const FORMAT_VERSION: u64 = 1;
/// Built-in `defaults.max_body`: generous for webhook payloads, small enough to bound memory.
const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// Built-in target timeout; providers themselves give up after 10–30 s.
const DEFAULT_TARGET_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Keys of the product's interface that a later version handles; refused rather than
/// silently ignored, since ignoring `verify` would forward unverified events.
const NOT_YET: &str = "is not supported by this version of hookrouter; remove it";

/// Walks the document root and returns the model, or nothing when errors were recorded.
pub(crate) fn config(r: &mut Reader<'_>, root: &Node<'_>, source: PathBuf) -> Option<Config> {
    let mut m = r.map(root, "")?;

    if let Some(n) = m.get("version") {
        if let Some(v) = r.integer(n, "version", 0..=u64::MAX) {
            if v != FORMAT_VERSION {
                r.error(n, "version", format!("config format version {v} is not supported: this build reads `version: {FORMAT_VERSION}`"));
            }
        }
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
        None => Defaults {
            max_body: DEFAULT_MAX_BODY,
            tolerance: None,
        },
    };
    let server = match m.get("server") {
        Some(n) => server(r, n, "server"),
        None => DEFAULT_SERVER,
    };
    let queue = match m.get("queue") {
        Some(n) => queue(r, n, "queue"),
        None => Queue::Embedded {
            path: PathBuf::from("./data"),
        },
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
    let routes: Vec<Placed<Route>> = match m.get("routes") {
        Some(n) => r
            .seq(n, "routes")
            .into_iter()
            .enumerate()
            .filter_map(|(index, (n, p))| {
                route(r, n, &p, &defaults, &mut refs).map(|(item, shown)| Placed {
                    item,
                    index,
                    location: location(n),
                    shown,
                })
            })
            .collect(),
        None => Vec::new(),
    };
    m.finish(r);

    check_listeners(r, &listen, admin.as_ref());
    if let Some(names) = &target_names {
        check_targets(r, names, refs);
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

fn defaults(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Defaults {
    let mut d = Defaults {
        max_body: DEFAULT_MAX_BODY,
        tolerance: None,
    };
    let Some(mut m) = r.map(node, path) else {
        return d;
    };
    if let Some(n) = m.get("max_body") {
        d.max_body = max_body(r, n, &m.path("max_body")).unwrap_or(d.max_body);
    }
    if let Some(n) = m.get("tolerance") {
        d.tolerance = r.duration(n, &m.path("tolerance")).or(d.tolerance);
    }
    m.finish(r);
    d
}

fn max_body(r: &mut Reader<'_>, node: &Node<'_>, path: &str) -> Option<u64> {
    let v = r.size(node, path)?;
    if v == 0 {
        r.error(node, path, "must be more than 0 bytes");
        return None;
    }
    Some(v)
}

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
    if let Some(n) = m.get("max_connections") {
        if let Some(v) = r.integer(n, &m.path("max_connections"), 1..=1_000_000) {
            s.max_connections = v as usize;
        }
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
    let fallback = Queue::Embedded {
        path: PathBuf::from("./data"),
    };
    let Some(mut m) = r.map(node, path) else {
        return fallback;
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
            fallback
        }
        (Some(e), None) => {
            let p = m.path("embedded");
            match r.map(e, &p) {
                Some(mut em) => {
                    let dir = em
                        .get("path")
                        .and_then(|n| r.file_path(n, &em.path("path")));
                    em.finish(r);
                    Queue::Embedded {
                        path: dir.unwrap_or_else(|| PathBuf::from("./data")),
                    }
                }
                None => fallback,
            }
        }
        (None, Some(n)) => {
            let p = m.path("nats");
            match r.map(n, &p) {
                Some(mut nm) => {
                    let url = required(
                        r,
                        &mut nm,
                        n,
                        "url",
                        "the NATS server URL, e.g. `nats://127.0.0.1:4222`",
                    )
                    .and_then(|(n, p)| r.non_empty(n, &p, "the NATS URL"));
                    nm.finish(r);
                    match url {
                        Some(u) => Queue::Nats { url: u.value },
                        None => fallback,
                    }
                }
                None => fallback,
            }
        }
        (None, None) => fallback,
    };
    m.finish(r);
    q
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
        Some(n) => {
            let p = m.path("timeout");
            match r.duration(n, &p) {
                Some(d) if d.is_zero() => {
                    r.error(n, &p, "must be more than 0");
                    None
                }
                d => d,
            }
        }
        None => Some(DEFAULT_TARGET_TIMEOUT),
    };
    for key in ["sign", "retry", "max_in_flight"] {
        if let Some(n) = m.get(key) {
            r.error(n, &m.path(key), format!("`{key}` {NOT_YET}"));
        }
    }
    m.finish(r);
    Some(Target {
        name: name.to_string(),
        url: url?,
        timeout: timeout?,
    })
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
    refs: &mut Vec<TargetRef>,
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
                Some(s) if s.value == "sync" => Some(Mode::Sync),
                Some(s) if s.value == "async" => {
                    r.error(n, &p, "`mode: async` (durable fan-out) is not supported by this version of hookrouter; set `mode: sync`");
                    None
                }
                Some(s) => {
                    r.error(n, &p, format!("{s} is not a mode: use `sync`"));
                    None
                }
                None => None,
            }
        }
        None => {
            r.error(node, &m.path("mode"), "missing: the default `mode: async` (durable fan-out) is not supported by this version of hookrouter; set `mode: sync`");
            None
        }
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
    let verify = m
        .get("verify")
        .and_then(|n| verify(r, n, &m.path("verify"), defaults));
    let mut event = verify
        .as_ref()
        .map(|v| crate::event::defaults(v.scheme))
        .unwrap_or_default();
    if let Some(n) = m.get("event") {
        event_override(r, n, &m.path("event"), &mut event);
    }
    for key in ["version"] {
        if let Some(n) = m.get(key) {
            r.error(n, &m.path(key), format!("`{key}` {NOT_YET}"));
        }
    }
    let deliver = match m.get("deliver") {
        Some(n) => deliver(r, n, &m.path("deliver"), refs),
        None => {
            r.error(
                node,
                &m.path("deliver"),
                "missing: name where events go, e.g. `deliver: [ { target: billing } ]`",
            );
            Vec::new()
        }
    };
    if mode == Some(Mode::Sync) {
        if let Some(n) = m.get("deliver") {
            let p = m.path("deliver");
            if deliver.len() > 1 {
                r.error(n, &p, "`mode: sync` forwards to exactly one target and relays its answer: keep one `deliver` entry");
            }
            if deliver.iter().any(|d| !d.events.is_empty()) {
                r.error(n, &p, "`events` filters do not apply to `mode: sync` (every request is forwarded): remove `events`");
            }
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
    if !raw.is_empty() {
        if let Err(bad) = crate::verify::Verifier::new(scheme, &raw, tolerance, &options) {
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

/// A `deliver[].target` reference, kept with its position until all targets are known.
struct TargetRef {
    name: String,
    shown: String,
    location: Option<super::Location>,
    path: String,
}

fn deliver(
    r: &mut Reader<'_>,
    node: &Node<'_>,
    path: &str,
    refs: &mut Vec<TargetRef>,
) -> Vec<Deliver> {
    let items = r.seq(node, path);
    if items.is_empty() && matches!(&node.data, saphyr::YamlData::Sequence(_)) {
        r.error(
            node,
            path,
            "is empty: name at least one target, e.g. `deliver: [ { target: billing } ]`",
        );
    }
    let mut out = Vec::new();
    for (n, p) in items {
        let Some(mut m) = r.map(n, &p) else { continue };
        let target = required(r, &mut m, n, "target", "the target name from `targets:`").and_then(
            |(tn, tp)| {
                r.non_empty(tn, &tp, "the target name")
                    .map(|t| (t, location(tn), tp))
            },
        );
        let events = m
            .get("events")
            .map(|en| {
                r.texts(en, &m.path("events"))
                    .into_iter()
                    .map(|(t, _, _)| t.value)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(vn) = m.get("versions") {
            r.error(vn, &m.path("versions"), format!("`versions` {NOT_YET}"));
        }
        m.finish(r);
        if let Some((target, loc, tp)) = target {
            refs.push(TargetRef {
                name: target.value.clone(),
                shown: target.to_string(),
                location: loc,
                path: tp,
            });
            out.push(Deliver {
                target: target.value,
                events,
            });
        }
    }
    out
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
    if let Some(a) = admin {
        if let Some(i) = seen.get(&a.addr) {
            r.error_at(
                None,
                "admin.addr",
                format!("the admin address is also used by listen[{i}]: the admin listener needs its own address"),
            );
        }
    }
}

fn check_targets(r: &mut Reader<'_>, targets: &[String], refs: Vec<TargetRef>) {
    for TargetRef {
        name,
        shown,
        location: loc,
        path,
    } in refs
    {
        if !targets.contains(&name) {
            let known: Vec<&str> = targets.iter().map(String::as_str).collect();
            let hint = if known.is_empty() {
                "no targets are defined: add it under `targets:`".to_string()
            } else {
                format!(
                    "define it under `targets:` or use one of: {}",
                    known.join(", ")
                )
            };
            r.error_at(loc, &path, format!("unknown target {shown}: {hint}"));
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
