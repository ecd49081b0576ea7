//! Built-in alerts: the rules under `alerts.rules`, evaluated in the router every
//! `evaluate_every` over sliding windows of its own metrics, with notifications to
//! `alerts.notify[]` when an alert fires, again every `repeat` while it fires, and when it
//! resolves.
//!
//! Each rule yields one alert per instance: per target, per route, per certificate, or one
//! for the process, as its signal is measured. The condition must hold for the rule's `for`
//! before the alert fires. Counters are read from the metrics registry and kept as a short
//! history of samples (at most [`MAX_SAMPLES`] over the longest window any rule needs), so a
//! window's count is the counter now minus the counter at the window's start.
//!
//! Notifications go out from tasks of their own, with retries, so a slow or failing receiver
//! never holds up evaluation or request handling. Firing alerts are listed at
//! `GET /api/v1/alerts` and counted in `hookrouter_alerts_firing{alert}`.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt as _, Full, Limited};
use serde::Serialize;

use crate::{
    config::{AlertRule, Alerts as Settings, Notify, NotifyFormat, Signal},
    forward::pool::Pool,
    ingress::Shared,
};

/// Samples older than every window's span (kept only for `traffic_ratio` baselines) are
/// thinned to about this many over the longest reach.
const MAX_SAMPLES: usize = 1000;

/// Alertmanager forgets an alert not re-sent within its `resolve_timeout` (5m by default):
/// firing alerts go to `alertmanager` receivers at least this often, whatever `repeat` says.
const ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);

/// Attempts per notification, and the pause before the second and third.
const NOTIFY_ATTEMPTS: u32 = 3;
const NOTIFY_BACKOFF: Duration = Duration::from_secs(1);

/// An alert as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FiringView {
    pub(crate) alert: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) summary: String,
    pub(crate) value: f64,
    /// RFC 3339.
    pub(crate) since: String,
}

/// Firing alerts, for the admin API.
static FIRING: LazyLock<Mutex<Vec<FiringView>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// The alerts firing now.
pub(crate) fn firing() -> Vec<FiringView> {
    FIRING.lock().map(|f| f.clone()).unwrap_or_default()
}

/// Counter values at one moment: `(metric, label)` → value.
type Counters = HashMap<(&'static str, String), f64>;

/// What an instance of a rule measures from.
struct Reading {
    counters: Counters,
    /// Gauges: oldest pending age per target, certificate expiry per certificate label.
    oldest: HashMap<String, f64>,
    certificates: Vec<(BTreeMap<String, String>, f64)>,
    reload_failed: bool,
}

/// One alert's state.
struct Instance {
    /// The rule as of the last evaluation (to resolve the alert if a reload removes it).
    rule: AlertRule,
    labels: BTreeMap<String, String>,
    /// Since when the condition holds.
    since: Option<Instant>,
    /// When it fired (wall clock, for receivers) and when it was last sent to each receiver.
    firing: Option<(SystemTime, Vec<Option<Instant>>)>,
    value: f64,
    /// Bumped at every change of state: a notification still being retried for an older state
    /// is dropped rather than sent after a newer one.
    generation: Arc<AtomicU64>,
}

/// Evaluates the rules until the task is dropped.
pub(crate) async fn run(shared: Arc<Shared>) {
    let pool = match crate::forward::pool::client_tls() {
        Ok(tls) => Arc::new(Pool::new(tls)),
        Err(e) => {
            tracing::error!(error = %e, "alerts: cannot load root certificates; alerts are off");
            return;
        }
    };
    let mut history: VecDeque<(Instant, Counters)> = VecDeque::new();
    let mut instances: HashMap<(String, String), Instance> = HashMap::new();
    let mut published = HashSet::new();
    loop {
        let snap = shared.snapshot.load_full();
        let settings = &snap.config.alerts;
        let every = settings.evaluate_every;
        if !settings.rules.is_empty() {
            if let Some(engine) = &shared.delivery {
                engine.observe();
            }
            let now = Instant::now();
            let reading = read();
            let reach = |r: &AlertRule| match r.signal {
                Signal::TrafficRatio => r.window.saturating_add(r.baseline),
                _ => r.window,
            };
            let horizon = settings.rules.iter().map(reach).max().unwrap_or_default();
            let dense = settings
                .rules
                .iter()
                .map(|r| r.window)
                .max()
                .unwrap_or_default();
            let ctx = Context {
                settings,
                config: &snap.config,
                admin: snap.config.admin.as_ref().map(|a| a.addr.to_string()),
                pool: &pool,
            };
            evaluate(&ctx, &reading, &history, &mut instances, now);
            remember(&mut history, now, reading.counters, dense, horizon);
            publish(&instances, settings, &mut published);
        } else {
            // Without rules nothing is measured: a rule added later starts from fresh samples.
            history.clear();
            if !instances.is_empty() {
                instances.clear();
                publish(&instances, settings, &mut published);
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Adds `counters` to the history. Samples within `dense` of now (every window's span) are
/// all kept, so a window starts within one evaluation of where it should; older ones, needed
/// only for `traffic_ratio` baselines, are thinned to about [`MAX_SAMPLES`] over `horizon`;
/// samples older than `horizon` go, except the one just before it (where the longest reach
/// starts).
fn remember(
    history: &mut VecDeque<(Instant, Counters)>,
    now: Instant,
    counters: Counters,
    dense: Duration,
    horizon: Duration,
) {
    history.push_back((now, counters));
    while history.len() > 2
        && history
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) > horizon)
    {
        history.pop_front();
    }
    let sparse = horizon / MAX_SAMPLES as u32;
    if sparse.is_zero() {
        return;
    }
    let mut last_kept: Option<Instant> = None;
    history.retain(|(t, _)| {
        let keep = now.duration_since(*t) <= dense
            || last_kept.is_none_or(|k| t.duration_since(k) >= sparse);
        if keep {
            last_kept = Some(*t);
        }
        keep
    });
}

/// The counters and gauges the rules read, from the metrics registry.
fn read() -> Reading {
    let mut counters = Counters::new();
    let mut oldest = HashMap::new();
    let mut certificates = Vec::new();
    let mut reload_failed = false;
    for family in crate::metrics::get().gather() {
        let name = family.name();
        for m in family.get_metric() {
            let label = |key: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == key)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            let counter = m.get_counter().get_value();
            let mut add = |metric: &'static str, key: String, v: f64| {
                *counters.entry((metric, key)).or_default() += v;
            };
            match name {
                "hookrouter_deliveries_total" => {
                    add("attempts", label("target"), counter);
                    if label("result") == "dead" {
                        add("failed", label("target"), counter);
                    }
                }
                "hookrouter_delivery_retries_total" => {
                    add("attempts", label("target"), counter);
                    add("failed", label("target"), counter);
                }
                "hookrouter_dead_letters_added_total" => add("dead", label("target"), counter),
                "hookrouter_verification_failures_total" => {
                    add("verification", label("route"), counter);
                }
                "hookrouter_requests_total" => {
                    if matches!(
                        label("outcome").as_str(),
                        "accepted" | "duplicate" | "forwarded"
                    ) {
                        add("traffic", label("route"), counter);
                    }
                }
                "hookrouter_queue_oldest_pending_age_seconds" => {
                    oldest.insert(label("target"), m.get_gauge().get_value());
                }
                "hookrouter_certificate_expiry_timestamp_seconds" => {
                    let labels = BTreeMap::from([
                        ("listener".to_string(), label("listener")),
                        ("certificate".to_string(), label("certificate")),
                    ]);
                    certificates.push((labels, m.get_gauge().get_value()));
                }
                "hookrouter_config_last_reload_success" => {
                    reload_failed = m.get_gauge().get_value() < 0.5;
                }
                _ => {}
            }
        }
    }
    Reading {
        counters,
        oldest,
        certificates,
        reload_failed,
    }
}

struct Context<'a> {
    settings: &'a Settings,
    /// The config the settings came from: rules, routes and targets of one generation.
    config: &'a crate::config::Config,
    admin: Option<String>,
    pool: &'a Arc<Pool>,
}

/// A counter's increase over `span` ending `ago` before now: `None` while the history does
/// not reach back that far.
fn increase(
    reading: &Reading,
    history: &VecDeque<(Instant, Counters)>,
    now: Instant,
    key: &(&'static str, String),
    ago: Duration,
    span: Duration,
    partial: bool,
) -> Option<f64> {
    let at = |back: Duration| -> Option<f64> {
        if back.is_zero() {
            return Some(reading.counters.get(key).copied().unwrap_or(0.0));
        }
        // The newest sample at or before `now - back`; with `partial`, the oldest one if none
        // is (or if the monotonic clock does not reach back that far, on a fresh boot).
        let found = now
            .checked_sub(back)
            .and_then(|t| history.iter().rev().find(|(s, _)| *s <= t))
            .or_else(|| partial.then(|| history.front()).flatten())?;
        Some(found.1.get(key).copied().unwrap_or(0.0))
    };
    Some(at(ago)? - at(ago.saturating_add(span))?)
}

fn evaluate(
    ctx: &Context<'_>,
    reading: &Reading,
    history: &VecDeque<(Instant, Counters)>,
    instances: &mut HashMap<(String, String), Instance>,
    now: Instant,
) {
    let mut seen = HashSet::new();
    for rule in &ctx.settings.rules {
        for (labels, value) in measure(rule, ctx.config, reading, history, now) {
            // The instance is what is measured; the severity may change on a reload.
            let instance_key = labels
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let key = (rule.name.clone(), instance_key);
            seen.insert(key.clone());
            let holds = value.is_some_and(|v| rule.op.holds(v, rule.threshold));
            let inst = instances.entry(key).or_insert_with(|| Instance {
                rule: rule.clone(),
                labels: labels.clone(),
                since: None,
                firing: None,
                value: 0.0,
                generation: Arc::default(),
            });
            inst.rule = rule.clone();
            inst.labels = labels;
            if let Some(v) = value {
                inst.value = v;
            }
            if holds {
                let since = *inst.since.get_or_insert(now);
                if inst.firing.is_none() && now.duration_since(since) >= rule.hold {
                    inst.firing = Some((SystemTime::now(), vec![None; ctx.settings.notify.len()]));
                    inst.generation.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(alert = %rule.name, labels = ?inst.labels, value = inst.value, "alert firing");
                }
                if inst.firing.is_some() {
                    notify(ctx, inst, Status::Firing, now);
                }
            } else {
                inst.since = None;
                if inst.firing.is_some() {
                    resolve(ctx, inst, now);
                }
            }
        }
    }
    // Instances that no longer exist (a reload removed the rule, route, target or
    // certificate): a firing one is resolved, then forgotten.
    instances.retain(|k, inst| {
        if seen.contains(k) {
            return true;
        }
        if inst.firing.is_some() {
            resolve(ctx, inst, now);
        }
        false
    });
}

fn resolve(ctx: &Context<'_>, inst: &mut Instance, now: Instant) {
    inst.generation.fetch_add(1, Ordering::SeqCst);
    tracing::info!(alert = %inst.rule.name, labels = ?inst.labels, value = inst.value, "alert resolved");
    notify(ctx, inst, Status::Resolved, now);
    inst.firing = None;
}

/// Every instance of `rule` with its value (`None`: no data).
fn measure(
    rule: &AlertRule,
    config: &crate::config::Config,
    reading: &Reading,
    history: &VecDeque<(Instant, Counters)>,
    now: Instant,
) -> Vec<(BTreeMap<String, String>, Option<f64>)> {
    let labels = |kind: &str, name: &str| {
        BTreeMap::from([
            ("alertname".to_string(), rule.name.clone()),
            ("severity".to_string(), rule.severity.clone()),
            (kind.to_string(), name.to_string()),
        ])
    };
    let window = |metric: &'static str, name: &str| {
        increase(
            reading,
            history,
            now,
            &(metric, name.to_string()),
            Duration::ZERO,
            rule.window,
            true,
        )
    };
    let targets = || {
        config
            .targets
            .keys()
            .filter(|t| rule.target.as_ref().is_none_or(|only| only == *t))
            .cloned()
            .collect::<Vec<_>>()
    };
    let routes = || {
        config
            .routes
            .iter()
            .map(|r| r.name.clone())
            .filter(|r| rule.route.as_ref().is_none_or(|only| only == r))
            .collect::<Vec<_>>()
    };
    match rule.signal {
        Signal::DeliveryFailureRatio => targets()
            .into_iter()
            .map(|t| {
                let attempts = window("attempts", &t);
                let failed = window("failed", &t);
                let v = match (attempts, failed) {
                    (Some(a), Some(f)) if a > 0.0 && a >= rule.min_events as f64 => Some(f / a),
                    _ => None,
                };
                (labels("target", &t), v)
            })
            .collect(),
        Signal::DeadLettersAdded => targets()
            .into_iter()
            .map(|t| {
                let v = window("dead", &t);
                (labels("target", &t), v)
            })
            .collect(),
        Signal::OldestPendingSeconds => targets()
            .into_iter()
            .map(|t| {
                let v = Some(reading.oldest.get(&t).copied().unwrap_or(0.0));
                (labels("target", &t), v)
            })
            .collect(),
        Signal::VerificationFailures => routes()
            .into_iter()
            .map(|r| {
                let v = window("verification", &r);
                (labels("route", &r), v)
            })
            .collect(),
        Signal::TrafficRatio => routes()
            .into_iter()
            .map(|r| {
                let key = ("traffic", r.clone());
                let recent = increase(
                    reading,
                    history,
                    now,
                    &key,
                    Duration::ZERO,
                    rule.window,
                    false,
                );
                let before = increase(
                    reading,
                    history,
                    now,
                    &key,
                    rule.window,
                    rule.baseline,
                    false,
                );
                let v = match (recent, before) {
                    (Some(recent), Some(before))
                        if before > 0.0 && before >= rule.min_events as f64 =>
                    {
                        let rate = recent / rule.window.as_secs_f64();
                        let base = before / rule.baseline.as_secs_f64();
                        Some(rate / base)
                    }
                    _ => None,
                };
                (labels("route", &r), v)
            })
            .collect(),
        Signal::CertificateExpiryDays => {
            let unix = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            reading
                .certificates
                .iter()
                .map(|(cert, expiry)| {
                    let mut l = labels("listener", cert.get("listener").map_or("", String::as_str));
                    l.insert(
                        "certificate".into(),
                        cert.get("certificate").cloned().unwrap_or_default(),
                    );
                    (l, Some((expiry - unix) / 86_400.0))
                })
                .collect()
        }
        Signal::ReloadFailed => {
            let l = BTreeMap::from([
                ("alertname".to_string(), rule.name.clone()),
                ("severity".to_string(), rule.severity.clone()),
            ]);
            vec![(l, Some(if reading.reload_failed { 1.0 } else { 0.0 }))]
        }
    }
}

/// Updates the admin API's list and the `hookrouter_alerts_firing` gauge.
/// `published`: the rules whose series the last call set, to drop those of removed rules.
fn publish(
    instances: &HashMap<(String, String), Instance>,
    settings: &Settings,
    published: &mut HashSet<String>,
) {
    let mut views = Vec::new();
    let mut per_rule: BTreeMap<&str, i64> = settings
        .rules
        .iter()
        .map(|r| (r.name.as_str(), 0))
        .collect();
    for ((rule, _), inst) in instances {
        if let Some((started, _)) = &inst.firing {
            let started = *started;
            *per_rule.entry(rule.as_str()).or_default() += 1;
            views.push(FiringView {
                alert: rule.clone(),
                labels: inst.labels.clone(),
                summary: summary(&inst.rule, &inst.labels, inst.value),
                value: inst.value,
                since: rfc3339(started),
            });
        }
    }
    views.sort_by(|a, b| (&a.alert, &a.labels).cmp(&(&b.alert, &b.labels)));
    let m = crate::metrics::get();
    // Set every rule's count first, then drop the series of rules that are gone, so a
    // scrape never sees a rule's series missing.
    for (rule, n) in &per_rule {
        m.alerts_firing.with_label_values(&[rule]).set(*n);
    }
    for gone in published
        .iter()
        .filter(|r| !per_rule.contains_key(r.as_str()))
    {
        let _ = m.alerts_firing.remove_label_values(&[gone]);
    }
    *published = per_rule.keys().map(|r| r.to_string()).collect();
    if let Ok(mut f) = FIRING.lock() {
        *f = views;
    }
}

fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    crate::queue::rfc3339(ms)
}

/// One line that says what is wrong, e.g. `delivery_failure_ratio for target=billing is 0.31
/// (> 0.05 for 5m)`.
fn summary(rule: &AlertRule, labels: &BTreeMap<String, String>, value: f64) -> String {
    let subject = labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let subject = if subject.is_empty() {
        String::new()
    } else {
        format!(" for {subject}")
    };
    format!(
        "{}{subject} is {} ({} {} for {}s)",
        rule.signal.as_str(),
        round(value),
        rule.op.as_str(),
        round(rule.threshold),
        rule.hold.as_secs()
    )
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Firing,
    Resolved,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// Sends the alert's state to the receivers due for it, each from a task of its own: all of
/// them when it resolves or first fires, then each again after `repeat` (Alertmanager after
/// [`ALERTMANAGER_RESEND`] at most).
fn notify(ctx: &Context<'_>, inst: &mut Instance, status: Status, now: Instant) {
    let Some((started, sent)) = inst.firing.as_mut() else {
        return;
    };
    let started = *started;
    sent.resize(ctx.settings.notify.len(), None);
    let pointer = ctx
        .admin
        .as_ref()
        .map(|a| format!("http://{a}/api/v1/alerts"));
    let rule = &inst.rule;
    let text = summary(rule, &inst.labels, inst.value);
    let generation = inst.generation.load(Ordering::SeqCst);
    for (receiver, last) in ctx.settings.notify.iter().zip(sent.iter_mut()) {
        let every = match receiver.format {
            NotifyFormat::Alertmanager => ctx.settings.repeat.min(ALERTMANAGER_RESEND),
            _ => ctx.settings.repeat,
        };
        let due = status == Status::Resolved || last.is_none_or(|t| now.duration_since(t) >= every);
        if !due {
            continue;
        }
        *last = Some(now);
        let note = Note {
            status,
            rule,
            labels: &inst.labels,
            value: inst.value,
            summary: &text,
            started,
            pointer: pointer.as_deref(),
        };
        let body = payload(receiver.format, &note);
        let receiver = receiver.clone();
        let pool = ctx.pool.clone();
        let alert = rule.name.clone();
        let current = inst.generation.clone();
        tokio::spawn(async move {
            deliver(&pool, &receiver, body, &alert, status, || {
                current.load(Ordering::SeqCst) == generation
            })
            .await;
        });
    }
}

/// What a notification says.
struct Note<'a> {
    status: Status,
    rule: &'a AlertRule,
    labels: &'a BTreeMap<String, String>,
    value: f64,
    summary: &'a str,
    started: SystemTime,
    /// The admin API's alerts URL.
    pointer: Option<&'a str>,
}

/// The notification in the receiver's format.
fn payload(format: NotifyFormat, note: &Note<'_>) -> Vec<u8> {
    let Note {
        status,
        rule,
        labels,
        value,
        summary,
        started,
        pointer,
    } = *note;
    let value = match format {
        NotifyFormat::Json => serde_json::json!({
            "status": status.as_str(),
            "alert": rule.name,
            "labels": labels,
            "summary": summary,
            "value": value,
            "threshold": rule.threshold,
            "starts_at": rfc3339(started),
            "ends_at": (status == Status::Resolved).then(|| rfc3339(SystemTime::now())),
            "admin": pointer,
        }),
        NotifyFormat::Slack => {
            let icon = match status {
                Status::Firing => ":rotating_light:",
                Status::Resolved => ":white_check_mark:",
            };
            let see = pointer.map(|p| format!(" See {p}")).unwrap_or_default();
            serde_json::json!({
                "text": format!(
                    "{icon} [{}] {}: {summary}.{see}",
                    status.as_str().to_uppercase(),
                    rule.name
                ),
            })
        }
        NotifyFormat::Alertmanager => {
            // Alertmanager API v2: a list of alerts; a resolved one carries its end time.
            let mut alert = serde_json::json!({
                "labels": labels,
                "annotations": {
                    "summary": summary,
                    "description": format!("hookrouter alert {}: {summary}", rule.name),
                },
                "startsAt": rfc3339(started),
            });
            if status == Status::Resolved {
                alert["endsAt"] = serde_json::json!(rfc3339(SystemTime::now()));
            }
            if let Some(p) = pointer {
                alert["generatorURL"] = serde_json::json!(p);
            }
            serde_json::json!([alert])
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// POSTs `body` to the receiver, trying [`NOTIFY_ATTEMPTS`] times while `current` says the
/// alert is still in the state this notification reports.
async fn deliver(
    pool: &Pool,
    receiver: &Notify,
    body: Vec<u8>,
    alert: &str,
    status: Status,
    current: impl Fn() -> bool,
) {
    let body = Bytes::from(body);
    // The receiver's URL may carry a token (Slack): logs name its host only.
    let host = receiver.url.host().unwrap_or("").to_string();
    for attempt in 1..=NOTIFY_ATTEMPTS {
        if attempt > 1 && !current() {
            tracing::debug!(alert, receiver = %host, "alert notification superseded by a newer state");
            return;
        }
        let outcome = send(pool, receiver, body.clone()).await;
        match outcome {
            Ok(s) if s.is_success() => {
                tracing::info!(alert, status = status.as_str(), receiver = %host, "alert notification sent");
                return;
            }
            Ok(s) => {
                tracing::warn!(alert, receiver = %host, attempt, status = s.as_u16(), "alert notification refused")
            }
            Err(e) => {
                tracing::warn!(alert, receiver = %host, attempt, error = %e, "alert notification failed")
            }
        }
        if attempt < NOTIFY_ATTEMPTS {
            tokio::time::sleep(NOTIFY_BACKOFF * attempt).await;
        }
    }
    tracing::error!(alert, status = status.as_str(), receiver = %host, "alert notification given up");
}

async fn send(pool: &Pool, receiver: &Notify, body: Bytes) -> Result<http::StatusCode, String> {
    // The connection is to the receiver itself: the request line carries the path only (the
    // URL's query may hold a token; it stays in the request, never in logs).
    let target = receiver
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut req = Request::post(target)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    if let Some(a) = receiver.url.authority()
        && let Ok(v) = header::HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    let exchange = async {
        let (resp, lease) = pool
            .send(&receiver.url, req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if Limited::new(resp.into_body(), 64 << 10)
            .collect()
            .await
            .is_ok()
        {
            pool.put(lease);
        }
        Ok(status)
    };
    tokio::time::timeout(receiver.timeout, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_are_taken_over_the_window_from_the_history() {
        let t0 = Instant::now();
        let key = ("failed", "t".to_string());
        let sample = |v: f64| Counters::from([(key.clone(), v)]);
        let mut history = VecDeque::new();
        for (i, v) in [0.0, 10.0, 30.0, 60.0].into_iter().enumerate() {
            history.push_back((t0 + Duration::from_secs(i as u64 * 10), sample(v)));
        }
        let now = t0 + Duration::from_secs(40);
        let reading = Reading {
            counters: sample(100.0),
            oldest: HashMap::new(),
            certificates: Vec::new(),
            reload_failed: false,
        };
        let inc = |ago: u64, span: u64, partial: bool| {
            increase(
                &reading,
                &history,
                now,
                &key,
                Duration::from_secs(ago),
                Duration::from_secs(span),
                partial,
            )
        };
        // Now (100) minus the sample 20 s ago (30).
        assert_eq!(inc(0, 20, false), Some(70.0));
        // 10 s ago (60) minus 30 s ago (10).
        assert_eq!(inc(10, 20, false), Some(50.0));
        // Further back than the history: no data, unless a partial window will do.
        assert_eq!(inc(0, 60, false), None);
        assert_eq!(inc(0, 60, true), Some(100.0));
    }

    #[test]
    fn the_history_is_thinned_and_bounded() {
        let mut history = VecDeque::new();
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            remember(
                &mut history,
                t0 + Duration::from_millis(i * 100),
                Counters::new(),
                Duration::from_secs(10),
                Duration::from_secs(100),
            );
        }
        // Every sample of the last 10 s (one per 100 ms), then about one per 100 ms of the
        // rest (100 s / 1000): bounded either way.
        let recent = history
            .iter()
            .filter(|(t, _)| {
                (t0 + Duration::from_millis(9_999 * 100)).duration_since(*t)
                    <= Duration::from_secs(10)
            })
            .count();
        assert_eq!(recent, 101, "every recent sample kept");
        assert!(history.len() <= MAX_SAMPLES + 102, "{}", history.len());
        let span = history
            .back()
            .map(|(t, _)| *t)
            .zip(history.front().map(|(t, _)| *t))
            .map(|(b, f)| b.duration_since(f));
        assert!(span >= Some(Duration::from_secs(100)), "{span:?}");
    }
}
