//! `hookrouter dlq …` and `hookrouter events …`: the operator's view of async delivery, over
//! the running router's admin API (so they see exactly what the router sees, and replays are
//! scheduled by the router itself).
//!
//! Where to connect: `--admin URL` and `--token` (or `HOOKROUTER_ADMIN_TOKEN`) when given,
//! else `admin.addr` and `admin.token` from the config file (`-c`, default `router.yaml`).
//!
//! Exit codes: 0 done; 1 the API refused the request (unknown event id, no queue…), with its
//! message on stderr; 2 a usage, config or connection problem.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use crate::forward::pool::{Pool, client_tls};

/// The environment variable read for the token when `--token` is not given.
const TOKEN_ENV: &str = "HOOKROUTER_ADMIN_TOKEN";

/// How long one API call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest API answer read (1000 events with their deliveries fit easily).
const MAX_ANSWER: usize = 64 << 20;

/// How to reach the admin API.
#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// Config file to read `admin.addr` and `admin.token` from.
    #[arg(short, long, default_value = "router.yaml")]
    config: PathBuf,
    /// The admin listener, like `http://127.0.0.1:9090` (instead of the config's `admin.addr`).
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// The admin API token (default: $HOOKROUTER_ADMIN_TOKEN, else the config's `admin.token`).
    #[arg(long)]
    token: Option<String>,
}

/// Filters of a listing.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only events of this route.
    #[arg(long)]
    route: Option<String>,
    /// Only events with a delivery to this target.
    #[arg(long)]
    target: Option<String>,
    /// How many events, newest first (1 to 1000; default 50).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: Option<u16>,
    /// Only events received before this one (the next page: the last id shown).
    #[arg(long, value_name = "ID")]
    before: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `hookrouter dlq`.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// List events with dead letters, newest first.
    List(ListArgs),
    /// Deliver dead letters again (fresh retry budget): one event's, or all with `--all`.
    Replay(DlqReplayArgs),
}

/// Arguments of `hookrouter dlq replay`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
struct DlqReplayArgs {
    /// The event whose dead letters to replay.
    id: Option<String>,
    /// Replay every dead letter (narrowed by `--target` and `--route`).
    #[arg(long)]
    all: bool,
    /// Only dead letters to this target.
    #[arg(long)]
    target: Option<String>,
    /// Only dead letters of this route's events.
    #[arg(long)]
    route: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `hookrouter events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum EventsCommand {
    /// List stored events, newest first, with each target's delivery state.
    List(ListArgs),
    /// Show one event: its deliveries and every attempt.
    Show(ShowArgs),
    /// Deliver an event again, whatever its state (all its targets, or `--target`).
    Replay(EventReplayArgs),
}

/// Arguments of `hookrouter events show`.
#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The event's id (the `Hookrouter-Event-Id` the router answered with).
    id: String,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `hookrouter events replay`.
#[derive(Debug, clap::Args)]
struct EventReplayArgs {
    /// The event to deliver again.
    id: String,
    /// Only its delivery to this target.
    #[arg(long)]
    target: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Why a command failed.
enum Failure {
    /// Usage, config or connection: exit 2.
    Usage(String),
    /// The API refused: exit 1.
    Api(String),
}

/// Runs `hookrouter dlq …`.
pub fn dlq(args: &DlqArgs) -> ExitCode {
    let name = match &args.command {
        DlqCommand::List(_) => "dlq list",
        DlqCommand::Replay(_) => "dlq replay",
    };
    block_on(name, async {
        match &args.command {
            DlqCommand::List(a) => list(a, true).await,
            DlqCommand::Replay(a) => dlq_replay(a).await,
        }
    })
}

/// Runs `hookrouter events …`.
pub fn events(args: &EventsArgs) -> ExitCode {
    let name = match &args.command {
        EventsCommand::List(_) => "events list",
        EventsCommand::Show(_) => "events show",
        EventsCommand::Replay(_) => "events replay",
    };
    block_on(name, async {
        match &args.command {
            EventsCommand::List(a) => list(a, false).await,
            EventsCommand::Show(a) => show(a).await,
            EventsCommand::Replay(a) => event_replay(a).await,
        }
    })
}

fn block_on(name: &str, f: impl Future<Output = Result<(), Failure>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookrouter {name}: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Api(m)) => {
            eprintln!("hookrouter {name}: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("hookrouter {name}: {m}");
            ExitCode::from(2)
        }
    }
}

async fn list(args: &ListArgs, dead: bool) -> Result<(), Failure> {
    let api = Api::connect(&args.admin)?;
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(r) = &args.route {
        q.append_pair("route", r);
    }
    if let Some(t) = &args.target {
        q.append_pair("target", t);
    }
    if let Some(b) = &args.before {
        q.append_pair("before", b);
    }
    if let Some(l) = args.limit {
        q.append_pair("limit", &l.to_string());
    }
    let q = q.finish();
    let path = if dead {
        "/api/v1/dlq"
    } else {
        "/api/v1/events"
    };
    let path = if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    };
    let (raw, value) = api.call(Method::GET, &path).await?;
    if args.json {
        print_raw(&raw);
        return Ok(());
    }
    let key = if dead { "dead_letters" } else { "events" };
    let events = value
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::Api(format!("the answer has no `{key}` list")))?;
    if events.is_empty() {
        println!("{}", if dead { "no dead letters" } else { "no events" });
        return Ok(());
    }
    print!("{}", event_table(events));
    if let Some(next) = value.get("next_before").and_then(Value::as_str) {
        eprintln!("(more: add --before {})", clean(next));
    }
    Ok(())
}

async fn show(args: &ShowArgs) -> Result<(), Failure> {
    let api = Api::connect(&args.admin)?;
    let path = format!("/api/v1/events/{}", segment(&args.id)?);
    let (raw, e) = api.call(Method::GET, &path).await?;
    if args.json {
        print_raw(&raw);
        return Ok(());
    }
    print!("{}", event_details(&e));
    Ok(())
}

async fn dlq_replay(args: &DlqReplayArgs) -> Result<(), Failure> {
    let api = Api::connect(&args.admin)?;
    let mut q = form_urlencoded::Serializer::new(String::new());
    match &args.id {
        Some(id) => q.append_pair("event", id),
        None => q.append_pair("all", "true"),
    };
    if let Some(t) = &args.target {
        q.append_pair("target", t);
    }
    if let Some(r) = &args.route {
        q.append_pair("route", r);
    }
    let path = format!("/api/v1/dlq/replay?{}", q.finish());
    let (raw, value) = api.call(Method::POST, &path).await?;
    report_replay(&raw, &value, args.json);
    Ok(())
}

async fn event_replay(args: &EventReplayArgs) -> Result<(), Failure> {
    let api = Api::connect(&args.admin)?;
    let mut path = format!("/api/v1/events/{}/replay", segment(&args.id)?);
    if let Some(t) = &args.target {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("target", t)
            .finish();
        path = format!("{path}?{q}");
    }
    let (raw, value) = api.call(Method::POST, &path).await?;
    report_replay(&raw, &value, args.json);
    Ok(())
}

fn report_replay(raw: &[u8], value: &Value, json: bool) {
    if json {
        print_raw(raw);
        return;
    }
    let n = value.get("replayed").and_then(Value::as_u64).unwrap_or(0);
    let what = if n == 1 { "delivery" } else { "deliveries" };
    println!("replayed {n} {what} (due now, with a fresh retry budget)");
}

/// An event id as a path segment (the router's ids need no escaping).
fn segment(id: &str) -> Result<&str, Failure> {
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(id)
    } else {
        Err(Failure::Usage(format!(
            "`{}` is not an event id (ids look like 0193a4b2-7c1e-7d3a-9f00-5b2c8e1d4a6f)",
            clean(id)
        )))
    }
}

fn print_raw(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    println!("{}", text.trim_end());
}

/// A connection to the admin API.
struct Api {
    /// `http://host:port`, for messages.
    base: String,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    token: String,
    pool: Pool,
}

impl Api {
    /// Where to connect and with which token: flags, then the environment, then the config.
    fn connect(args: &AdminArgs) -> Result<Api, Failure> {
        let env_token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
        let mut token = args.token.clone().or(env_token);
        let mut base = args.admin.clone();
        let shown = args.config.display();
        if base.is_none() || token.is_none() {
            let config = match crate::config::load(&args.config) {
                Ok(c) => c,
                Err(e) => {
                    return Err(Failure::Usage(format!(
                        "cannot read the admin address and token from {shown}:\n{e}\n\
                         (use -c FILE for another config, or --admin URL with --token / {TOKEN_ENV} to skip it)"
                    )));
                }
            };
            let Some(admin) = config.admin else {
                return Err(Failure::Usage(format!(
                    "no admin listener in {shown}: add `admin: {{ addr, token }}` (or pass --admin URL)"
                )));
            };
            if base.is_none() {
                base = Some(admin_url(admin.addr));
            }
            if token.is_none() {
                token = admin.token.map(|t| t.expose().to_string());
            }
        }
        let base = base.unwrap_or_default();
        let Some(token) = token else {
            return Err(Failure::Usage(format!(
                "no admin token: set `admin.token` in {shown} (the router refuses the API without one), or pass --token / set {TOKEN_ENV}"
            )));
        };
        let with_scheme = if base.contains("://") {
            base.clone()
        } else {
            format!("http://{base}")
        };
        let uri: Uri = with_scheme.parse().map_err(|_| {
            Failure::Usage(format!("`{base}` is not a URL like http://127.0.0.1:9090"))
        })?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(Failure::Usage(format!(
                "`{base}` is not a URL like http://127.0.0.1:9090"
            )));
        };
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(Failure::Usage(format!(
                "`{base}`: the admin API is reached over http:// or https://"
            )));
        }
        let tls = client_tls()
            .map_err(|e| Failure::Usage(format!("cannot load root certificates: {e}")))?;
        Ok(Api {
            base: format!("{scheme}://{authority}"),
            scheme,
            authority,
            token,
            pool: Pool::new(tls),
        })
    }

    /// One call: the raw JSON and its parsed value, for a 2xx answer.
    async fn call(&self, method: Method, path: &str) -> Result<(Bytes, Value), Failure> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| Failure::Usage(format!("cannot build the request: {e}")))?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.authority.as_str())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                format!("hookrouter-cli/{}", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|_| Failure::Usage("the token is not a valid header value".to_string()))?;
        let exchange = async {
            let (resp, _) = self.pool.send(&uri, req).await.map_err(|e| {
                Failure::Usage(format!(
                    "cannot reach the admin API at {}: {e} (is the router running with this admin address?)",
                    self.base
                ))
            })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| Failure::Usage(format!("reading the answer from {}: {e}", self.base)))?
                .to_bytes();
            Ok::<_, Failure>((status, body))
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                Failure::Usage(format!(
                    "the admin API at {} did not answer within {}s",
                    self.base,
                    CALL_TIMEOUT.as_secs()
                ))
            })??;
        let value: Option<Value> = serde_json::from_slice(&body).ok();
        let message = value
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map(clean);
        if status.is_success() {
            return match value {
                Some(v) => Ok((body, v)),
                None => Err(Failure::Api(format!(
                    "{} answered {status} without JSON: is it a hookrouter admin listener?",
                    self.base
                ))),
            };
        }
        let message = message.unwrap_or_else(|| format!("{} answered {status}", self.base));
        Err(match status {
            StatusCode::UNAUTHORIZED => Failure::Usage(format!(
                "the admin API refused the token ({message}): check `admin.token`, --token or {TOKEN_ENV}"
            )),
            StatusCode::FORBIDDEN => Failure::Usage(message),
            StatusCode::NOT_FOUND if value.is_none() => Failure::Usage(format!(
                "{} has no admin API: is it a hookrouter admin listener of this version?",
                self.base
            )),
            _ => Failure::Api(message),
        })
    }
}

/// `http://IP:PORT` for an admin address; an unspecified address is reached on loopback.
fn admin_url(addr: std::net::SocketAddr) -> String {
    let host = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", addr.port())
}

// === Human output ===

/// Text from the API (event types and ids come from requests) made safe for a terminal:
/// control characters are shown escaped.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => clean(s),
        Some(Value::Number(n)) => n.to_string(),
        _ => "-".to_string(),
    }
}

/// `2026-11-25T19:03:44.123Z` → `2026-11-25 19:03:44` (or with milliseconds).
fn when(v: &Value, key: &str, millis: bool) -> String {
    let t = text(v, key);
    let Some(t) = t.strip_suffix('Z') else {
        return t;
    };
    let t = t.replacen('T', " ", 1);
    if millis {
        t
    } else {
        t.split('.').next().unwrap_or(&t).to_string()
    }
}

/// The last outcome of a delivery: the target's status, else the error.
fn last(d: &Value) -> String {
    if let Some(s) = d.get("last_status").and_then(Value::as_u64) {
        return s.to_string();
    }
    match d.get("last_error").and_then(Value::as_str) {
        Some(e) => shorten(&clean(e), 48),
        None => "-".to_string(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Columns padded to their widest cell, two spaces apart; the last one is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One row per delivery; an event's own columns only on its first row.
fn event_table(events: &[Value]) -> String {
    let mut rows = Vec::new();
    for e in events {
        let first = [
            text(e, "id"),
            when(e, "received_at", false),
            text(e, "route"),
            text(e, "type"),
        ];
        let deliveries = e
            .get("deliveries")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if deliveries.is_empty() {
            let mut row = first.to_vec();
            row.extend(["(none)", "-", "-", "-"].map(str::to_string));
            rows.push(row);
        }
        for (i, d) in deliveries.iter().enumerate() {
            let mut row = if i == 0 {
                first.to_vec()
            } else {
                vec![String::new(); 4]
            };
            row.extend([
                text(d, "target"),
                text(d, "state"),
                text(d, "attempts"),
                last(d),
            ]);
            rows.push(row);
        }
    }
    table(
        &[
            "ID",
            "RECEIVED (UTC)",
            "ROUTE",
            "TYPE",
            "TARGET",
            "STATE",
            "ATTEMPTS",
            "LAST",
        ],
        &rows,
    )
}

/// `events show`: the event, its deliveries, then every attempt.
fn event_details(e: &Value) -> String {
    let mut out = String::new();
    let mut fields = vec![
        ("event", text(e, "id")),
        ("route", text(e, "route")),
        ("type", text(e, "type")),
    ];
    if e.get("provider_id").is_some() {
        fields.push(("provider id", text(e, "provider_id")));
    }
    if e.get("version").is_some() {
        fields.push(("version", text(e, "version")));
    }
    fields.push(("received", format!("{} UTC", when(e, "received_at", true))));
    fields.push(("body", format!("{} bytes", text(e, "body_bytes"))));
    for (k, v) in fields {
        out.push_str(&format!("{k:<12} {v}\n"));
    }
    out.push('\n');
    let deliveries: Vec<Vec<String>> = e
        .get("deliveries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let next = match d.get("next_attempt_at") {
                Some(_) => when(d, "next_attempt_at", false),
                None => "-".to_string(),
            };
            vec![
                text(d, "target"),
                text(d, "state"),
                text(d, "attempts"),
                next,
                last(d),
            ]
        })
        .collect();
    if deliveries.is_empty() {
        out.push_str("no deliveries (no target's `events` filter matched)\n");
    } else {
        out.push_str(&table(
            &["TARGET", "STATE", "ATTEMPTS", "NEXT ATTEMPT (UTC)", "LAST"],
            &deliveries,
        ));
    }
    out.push('\n');
    let attempts: Vec<Vec<String>> = e
        .get("attempts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            vec![
                when(a, "at", true),
                text(a, "target"),
                text(a, "attempt"),
                text(a, "status"),
                format!("{} ms", text(a, "latency_ms")),
                match a.get("error") {
                    Some(_) => text(a, "error"),
                    None => "-".to_string(),
                },
            ]
        })
        .collect();
    if attempts.is_empty() {
        out.push_str("no attempts yet\n");
    } else {
        out.push_str(&table(
            &[
                "TIME (UTC)",
                "TARGET",
                "ATTEMPT",
                "STATUS",
                "LATENCY",
                "ERROR",
            ],
            &attempts,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_rows_group_by_event() {
        let events: Vec<Value> = serde_json::from_str(
            r#"[{"id":"e1","route":"r","type":"a.b","received_at":"2026-11-25T19:03:44.123Z",
                 "body_bytes":2,"deliveries":[
                   {"target":"billing","state":"dead","attempts":1,"last_status":400,"last_error":"HTTP 400"},
                   {"target":"audit","state":"pending","attempts":2,"last_error":"connection failed: refused"}]},
                {"id":"e2","route":"r","received_at":"2026-11-25T19:03:45.000Z","body_bytes":2,"deliveries":[]}]"#,
        )
        .expect("json");
        let t = event_table(&events);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[0].starts_with("ID  RECEIVED (UTC)       ROUTE  TYPE"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("e1  2026-11-25 19:03:44  r      a.b   billing  dead"),
            "{t}"
        );
        assert!(lines[1].ends_with("400"), "{t}");
        assert!(
            lines[2].starts_with(&format!("{}audit    pending", " ".repeat(38))),
            "{t}"
        );
        assert!(lines[2].ends_with("connection failed: refused"), "{t}");
        assert!(lines[3].contains("(none)"), "{t}");
    }

    #[test]
    fn details_list_attempts() {
        let e: Value = serde_json::from_str(
            r#"{"id":"e1","route":"r","type":"a.b","received_at":"2026-11-25T19:03:44.123Z",
                "body_bytes":2,"deliveries":[{"target":"t","state":"delivered","attempts":2,"last_status":200}],
                "attempts":[{"target":"t","attempt":1,"at":"2026-11-25T19:03:44.200Z","status":400,"latency_ms":3,"error":"HTTP 400"},
                            {"target":"t","attempt":2,"at":"2026-11-25T19:04:00.000Z","status":200,"latency_ms":1}]}"#,
        )
        .expect("json");
        let d = event_details(&e);
        assert!(d.contains("event        e1\n"), "{d}");
        assert!(
            d.contains("received     2026-11-25 19:03:44.123 UTC\n"),
            "{d}"
        );
        assert!(
            d.contains("2026-11-25 19:03:44.200  t       1        400     3 ms     HTTP 400\n"),
            "{d}"
        );
        assert!(
            d.contains("2026-11-25 19:04:00.000  t       2        200     1 ms     -\n"),
            "{d}"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(clean("plain"), "plain");
    }

    #[test]
    fn admin_addresses() {
        assert_eq!(
            admin_url("0.0.0.0:9090".parse().expect("addr")),
            "http://127.0.0.1:9090"
        );
        assert_eq!(
            admin_url("[::]:9090".parse().expect("addr")),
            "http://[::1]:9090"
        );
        assert_eq!(
            admin_url("10.1.2.3:9090".parse().expect("addr")),
            "http://10.1.2.3:9090"
        );
    }
}
