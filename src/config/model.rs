//! The validated configuration. Built only by `config::load`; everything here has been checked,
//! so nothing downstream re-validates or unwraps.

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::PathBuf, time::Duration};

use http::{Method, Uri};
use ipnet::IpNet;

/// A whole configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// Public listeners (plain HTTP or TLS).
    pub listen: Vec<Listen>,
    /// The admin listener, if configured.
    pub admin: Option<Admin>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Values routes inherit.
    pub defaults: Defaults,
    /// Connection limits and timeouts.
    pub server: Server,
    /// Where async events are stored.
    pub queue: Queue,
    /// Internal endpoints, by name.
    pub targets: BTreeMap<String, Target>,
    /// Routes in file order.
    pub routes: Vec<Route>,
    /// Alert rules and notification receivers (none when `alerts:` is absent).
    pub alerts: Alerts,
}

/// One public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Socket address to bind.
    pub addr: SocketAddr,
    /// Certificates when this listener terminates TLS; the first is the default.
    pub tls: Option<Vec<CertKey>>,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; ECDSA, RSA or Ed25519).
    pub key: PathBuf,
    /// Server names this certificate answers; empty means the names in the certificate.
    pub names: Vec<String>,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Socket address to bind.
    pub addr: SocketAddr,
    /// Bearer token for the admin API (probes need none).
    pub token: Option<Secret>,
}

/// Values that routes inherit unless they set their own.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Largest accepted request body, in bytes.
    pub max_body: u64,
    /// Signature timestamp tolerance for every route, when set; otherwise each scheme's own.
    pub tolerance: Option<Duration>,
    /// Deduplication window of async routes (24h).
    pub dedup_window: Duration,
}

/// Connection handling limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Time allowed to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time allowed from a request's first byte to the end of its header block.
    pub header_timeout: Duration,
    /// Time allowed to receive a request body.
    pub body_timeout: Duration,
    /// How long a connection with no request in progress stays open.
    pub idle_timeout: Duration,
    /// How long in-flight requests get to finish on shutdown.
    pub drain_timeout: Duration,
    /// Most client connections open at once, over all listeners.
    pub max_connections: usize,
    /// Largest request header block, in bytes (larger gets 431).
    pub max_header_bytes: usize,
}

/// The queue backend for async routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queue {
    /// A store on local disk.
    Embedded(Embedded),
    /// A NATS JetStream server shared by several instances.
    Nats(Nats),
}

/// `queue.nats`: a JetStream stream shared by every instance.
#[derive(Clone, PartialEq, Eq)]
pub struct Nats {
    /// Server URLs (a cluster's seeds), each `nats://host:port`, possibly with credentials.
    pub urls: Vec<String>,
    /// The stream's name (`HOOKROUTER`); its subjects, dead-letter stream, consumers and
    /// key-value buckets are named after it.
    pub stream: String,
    /// Copies JetStream keeps of each message (1; 3 on a three-node cluster).
    pub replicas: usize,
    /// How long a delivery pulled by an instance stays its own without a sign of life before
    /// JetStream hands it to another instance (30s).
    pub ack_wait: Duration,
    /// How long JetStream remembers message ids (the routes' longest `dedup_window` when
    /// unset).
    pub duplicate_window: Option<Duration>,
    /// How long events are kept (7 days): longer than any target's `retry.max_age`.
    pub retention: Duration,
    /// How long dead letters are kept (14 days).
    pub dead_retention: Duration,
    /// Most bytes the event stream may hold; beyond it ingest answers 503 (10 GiB).
    pub max_size: u64,
}

impl Nats {
    /// The defaults, for `urls`.
    pub fn at(urls: Vec<String>) -> Self {
        Nats {
            urls,
            stream: "HOOKROUTER".into(),
            replicas: 1,
            ack_wait: Duration::from_secs(30),
            duplicate_window: None,
            retention: Duration::from_secs(7 * 86_400),
            dead_retention: Duration::from_secs(14 * 86_400),
            max_size: 10 << 30,
        }
    }
}

impl std::fmt::Debug for Nats {
    // URLs may carry a user and password: show hosts only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("Nats")
            .field("urls", &hosts)
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("ack_wait", &self.ack_wait)
            .field("duplicate_window", &self.duplicate_window)
            .field("retention", &self.retention)
            .field("dead_retention", &self.dead_retention)
            .field("max_size", &self.max_size)
            .finish()
    }
}

/// A URL without the credentials it may carry (`nats://user:pass@host` → `nats://host`).
pub fn redact_url(u: &str) -> String {
    match (u.find("://"), u.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &u[..s + 3], &u[at + 1..]),
        (None, Some(at)) => u[at + 1..].to_string(),
        _ => u.to_string(),
    }
}

/// `queue.embedded`: the store on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// Folder of the store (`./data`).
    pub path: PathBuf,
    /// How long events whose deliveries all succeeded are kept (3 days).
    pub retention: Duration,
    /// How long events with a dead letter are kept for inspection and replay (14 days).
    pub dead_retention: Duration,
    /// Most bytes the store may use on disk; beyond it ingest answers 503 (10 GiB).
    pub max_size: u64,
}

impl Embedded {
    /// The defaults, at `path`.
    pub fn at(path: PathBuf) -> Self {
        Embedded {
            path,
            retention: Duration::from_secs(3 * 86_400),
            dead_retention: Duration::from_secs(14 * 86_400),
            max_size: 10 << 30,
        }
    }
}

/// An internal endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name in the config.
    pub name: String,
    /// Absolute `http://` or `https://` URL.
    pub url: Uri,
    /// How long to wait for its whole answer.
    pub timeout: Duration,
    /// Most deliveries in flight to it at once (async mode).
    pub max_in_flight: usize,
    /// Retry policy for async deliveries.
    pub retry: Retry,
    /// Sign async deliveries for the target to verify, when set.
    pub sign: Option<Sign>,
}

/// A target's `retry` block: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included (8).
    pub max_attempts: u32,
    /// Ceiling of the first retry's delay (5s); each later ceiling is 5 times the previous.
    pub initial: Duration,
    /// Largest delay between two attempts (10h).
    pub max_delay: Duration,
    /// No attempt starts later than this after the event arrived (or was replayed) (24h).
    pub max_age: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 8,
            initial: Duration::from_secs(5),
            max_delay: Duration::from_secs(10 * 3600),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// A target's `sign` block: the router signs what it delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sign {
    /// The secret as written (`whsec_…` base64, Standard Webhooks style).
    pub secret: Secret,
}

/// How a route hands events on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Store durably, answer 202, deliver in the background.
    Async,
    /// Forward to one target and relay its answer.
    Sync,
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique name, used in logs and metric labels.
    pub name: String,
    /// Exact, canonical request path.
    pub path: String,
    /// Accepted methods.
    pub methods: Vec<Method>,
    /// Required `Host` (lowercase, without port), if any.
    pub host: Option<String>,
    /// Async or sync.
    pub mode: Mode,
    /// Client networks allowed; `None` allows any client.
    pub allow_ips: Option<Vec<IpNet>>,
    /// Largest accepted body, in bytes.
    pub max_body: u64,
    /// Signature verification, if configured.
    pub verify: Option<Verify>,
    /// Where events' type and id are: the scheme's defaults, with the route's `event` on top.
    pub event: crate::event::Spec,
    /// Where events go.
    pub deliver: Vec<Deliver>,
    /// Where the event's version is and which versions are accepted, if configured.
    pub version: Option<VersionSpec>,
    /// An event id accepted within this window is answered 200 and not delivered again;
    /// zero turns deduplication off (async mode).
    pub dedup_window: Duration,
}

/// A route's `version` block.
#[derive(Debug, Clone)]
pub struct VersionSpec {
    /// Where the version is read.
    pub from: crate::event::Source,
    /// Accepted version globs; empty accepts every version.
    pub accept: Vec<String>,
    /// The version assumed when the event carries none.
    pub default: Option<String>,
    /// What to do with a version not in `accept` (or none and no default).
    pub on_unknown: OnUnknown,
    /// The header that carries the version to targets (`Webhook-Version`).
    pub header: http::HeaderName,
}

/// `version.on_unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnknown {
    /// Answer 400.
    Reject,
    /// Deliver it (to entries without a `versions` filter, or whose filter matches).
    Deliver,
}

/// A route's `verify` block.
#[derive(Debug, Clone)]
pub struct Verify {
    /// The scheme.
    pub scheme: crate::verify::SchemeName,
    /// Secrets (or public keys), in order; any one matching passes.
    pub secrets: Vec<Secret>,
    /// Tolerance from the route or `defaults`; `None` means the scheme's own.
    pub tolerance: Option<Duration>,
    /// Scheme options.
    pub options: crate::verify::Options,
    /// The public URL the provider calls, for schemes that sign it (else rebuilt from the request).
    pub url: Option<String>,
}

/// One `deliver[]` entry.
#[derive(Debug, Clone)]
pub struct Deliver {
    /// Target name (checked to exist).
    pub target: String,
    /// Event type globs; empty means every event.
    pub events: Vec<String>,
    /// Version globs; empty means every version.
    pub versions: Vec<String>,
}

impl Verify {
    /// Whether the scheme signs the URL the provider called.
    pub fn signs_url(&self) -> bool {
        use crate::verify::SchemeName;
        match self.scheme {
            SchemeName::Square | SchemeName::Twilio => true,
            SchemeName::GenericHmac => self
                .options
                .generic
                .as_ref()
                .is_some_and(|g| g.template.contains("{url}")),
            _ => false,
        }
    }
}

/// `alerts:`: rules the router evaluates itself, and where notifications go.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerts {
    /// `evaluate_every` (10s): how often rules are evaluated.
    pub evaluate_every: Duration,
    /// `repeat` (4h): how often a still-firing alert is sent again.
    pub repeat: Duration,
    /// Rules in file order; names are unique.
    pub rules: Vec<AlertRule>,
    /// Receivers; every notification goes to each of them.
    pub notify: Vec<Notify>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            evaluate_every: Duration::from_secs(10),
            repeat: Duration::from_secs(4 * 3600),
            rules: Vec::new(),
            notify: Vec::new(),
        }
    }
}

/// One `alerts.rules[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// `name`: unique among rules; same charset as route/target names.
    pub name: String,
    /// From `when: "<signal> <op> <number>"`.
    pub signal: Signal,
    /// The comparison in `when`.
    pub op: Comparison,
    /// The number in `when` (finite).
    pub threshold: f64,
    /// `for` (0s): how long the condition must hold before the alert fires.
    pub hold: Duration,
    /// `window` (5m): the sliding window counts and ratios are taken over; more than 0.
    pub window: Duration,
    /// `baseline` (1h): for `traffic_ratio` only, the span before the window whose average rate
    /// the window's rate is compared with; more than 0.
    pub baseline: Duration,
    /// `min_events` (10): below this many events in the window (for `traffic_ratio`: in the
    /// baseline) the rule has no data and does not fire.
    pub min_events: u64,
    /// `route`: only this route (a defined route name); per-route signals only.
    pub route: Option<String>,
    /// `target`: only this target (a defined target name); per-target signals only.
    pub target: Option<String>,
    /// `severity` (`warning`): `info`, `warning` or `critical`.
    pub severity: String,
}

/// What a rule measures (the first word of `when`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Per target: failed attempts (retried or dead) / all attempts in the window.
    DeliveryFailureRatio,
    /// Per route: verification failures in the window.
    VerificationFailures,
    /// Per target: deliveries that became dead letters in the window.
    DeadLettersAdded,
    /// Per target: age of the oldest waiting delivery, seconds.
    OldestPendingSeconds,
    /// Per route: requests per second in the window / requests per second in the baseline.
    TrafficRatio,
    /// Per served certificate: days until it expires.
    CertificateExpiryDays,
    /// 1 when the last config reload failed, else 0.
    ReloadFailed,
}

impl Signal {
    /// Every signal, in the order the documentation lists them.
    pub const ALL: [Signal; 7] = [
        Signal::DeliveryFailureRatio,
        Signal::VerificationFailures,
        Signal::DeadLettersAdded,
        Signal::OldestPendingSeconds,
        Signal::TrafficRatio,
        Signal::CertificateExpiryDays,
        Signal::ReloadFailed,
    ];

    /// Its name in `when`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::DeliveryFailureRatio => "delivery_failure_ratio",
            Signal::VerificationFailures => "verification_failures",
            Signal::DeadLettersAdded => "dead_letters_added",
            Signal::OldestPendingSeconds => "oldest_pending_seconds",
            Signal::TrafficRatio => "traffic_ratio",
            Signal::CertificateExpiryDays => "certificate_expiry_days",
            Signal::ReloadFailed => "reload_failed",
        }
    }

    /// The signal named `name` in `when`.
    pub fn from_name(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Measured per route (a rule may narrow it with `route`).
    pub fn per_route(self) -> bool {
        matches!(self, Signal::VerificationFailures | Signal::TrafficRatio)
    }

    /// Measured per target (a rule may narrow it with `target`).
    pub fn per_target(self) -> bool {
        matches!(
            self,
            Signal::DeliveryFailureRatio | Signal::DeadLettersAdded | Signal::OldestPendingSeconds
        )
    }
}

/// The comparison in `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>`
    Above,
    /// `>=`
    AtLeast,
    /// `<`
    Below,
    /// `<=`
    AtMost,
}

impl Comparison {
    /// Whether `value` compares to `threshold` this way; never for NaN.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::AtLeast => value >= threshold,
            Comparison::Below => value < threshold,
            Comparison::AtMost => value <= threshold,
        }
    }

    /// Its symbol in `when`.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::AtLeast => ">=",
            Comparison::Below => "<",
            Comparison::AtMost => "<=",
        }
    }

    /// The comparison written `symbol` in `when`.
    pub fn from_symbol(symbol: &str) -> Option<Comparison> {
        [
            Comparison::Above,
            Comparison::AtLeast,
            Comparison::Below,
            Comparison::AtMost,
        ]
        .into_iter()
        .find(|c| c.as_str() == symbol)
    }
}

/// One `alerts.notify[]` receiver.
#[derive(Clone, PartialEq)]
pub struct Notify {
    /// `url`: absolute `http://` or `https://`. It may carry a token (Slack webhook URLs do),
    /// so `Debug` shows only its scheme and host.
    pub url: Uri,
    /// `format` (`json`): the body's shape.
    pub format: NotifyFormat,
    /// `timeout` (5s) per send attempt; more than 0.
    pub timeout: Duration,
}

impl Notify {
    /// The URL with everything after the host hidden, for logs: `https://hooks.slack.com/***`.
    pub fn redacted_url(&self) -> String {
        format!(
            "{}://{}/***",
            self.url.scheme_str().unwrap_or("http"),
            self.url.host().unwrap_or("")
        )
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify")
            .field("url", &self.redacted_url())
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `alerts.notify[].format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// A JSON object per alert (hookrouter's own shape).
    Json,
    /// A Slack incoming-webhook message.
    Slack,
    /// The Alertmanager `POST /api/v2/alerts` body.
    Alertmanager,
}

impl NotifyFormat {
    /// Its name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Json => "json",
            NotifyFormat::Slack => "slack",
            NotifyFormat::Alertmanager => "alertmanager",
        }
    }

    /// The format named `name` in the config.
    pub fn from_name(name: &str) -> Option<NotifyFormat> {
        [
            NotifyFormat::Json,
            NotifyFormat::Slack,
            NotifyFormat::Alertmanager,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }
}

/// A secret value; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(s: String) -> Self {
        Secret(s)
    }

    /// The secret bytes, for the code that uses them.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
