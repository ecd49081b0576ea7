//! The admin API under `/api/v1/`: events, dead letters, replay and queue statistics, as JSON.
//!
//! Every request needs `Authorization: Bearer <admin.token>`, read from the running config on
//! each request (a reload that changes the token applies to the next request) and compared in
//! constant time. With no token configured the API answers 403 and tells the operator to set
//! one: it is never served unauthenticated. Checks run in this order, so nothing about the API
//! is revealed before the token is: token (403 / 401) → endpoint (404) → method (405) → queue
//! open (409) → query (400) → the action.
//!
//! Answers are JSON with `Cache-Control: no-store`; errors are `{"error": "…"}`. Event bodies,
//! headers and secrets are never included (the queue's views carry neither).

use std::{collections::BTreeMap, net::SocketAddr};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    ingress::Shared,
    queue::{ListFilter, QueueError, ReplaySelection},
};

/// Where the API lives.
const PREFIX: &str = "/api/v1";

/// Listings give this many events unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 50;
/// Largest `limit`.
const MAX_LIMIT: usize = 1000;

/// Whether `path` belongs to the API (and so needs the token).
pub(super) fn is_api(path: &str) -> bool {
    path == PREFIX || path.starts_with("/api/v1/")
}

/// What an endpoint does.
enum Endpoint<'a> {
    Events,
    Event(&'a str),
    ReplayEvent(&'a str),
    DeadLetters,
    ReplayDeadLetters,
    Queue,
    Alerts,
    Instances,
}

impl<'a> Endpoint<'a> {
    fn of(path: &'a str) -> Option<Endpoint<'a>> {
        let rest = path.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        Some(match segments.as_slice() {
            ["events"] => Endpoint::Events,
            ["events", id] if valid_id(id) => Endpoint::Event(id),
            ["events", id, "replay"] if valid_id(id) => Endpoint::ReplayEvent(id),
            ["dlq"] => Endpoint::DeadLetters,
            ["dlq", "replay"] => Endpoint::ReplayDeadLetters,
            ["queue"] => Endpoint::Queue,
            ["alerts"] => Endpoint::Alerts,
            ["instances"] => Endpoint::Instances,
            _ => return None,
        })
    }

    /// The methods it takes, as the `Allow` header lists them.
    fn allow(&self) -> &'static str {
        match self {
            Endpoint::ReplayEvent(_) | Endpoint::ReplayDeadLetters => "POST",
            _ => "GET, HEAD",
        }
    }

    fn accepts(&self, method: &Method) -> bool {
        match self {
            Endpoint::ReplayEvent(_) | Endpoint::ReplayDeadLetters => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        }
    }
}

/// Event ids are the router's own (UUIDs); anything else cannot name one.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Answers one API request. Never fails: every problem is a JSON error.
pub(super) async fn answer(
    shared: &Shared,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match handle(shared, peer, &req).await {
        Ok(r) => r,
        Err(refusal) => refusal.into_response(),
    };
    tracing::info!(
        peer = %peer.ip().to_canonical(),
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        "admin api"
    );
    resp
}

async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Refusal> {
    authorize(shared, peer, req)?;
    let endpoint = Endpoint::of(req.uri().path())
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such endpoint"))?;
    if !endpoint.accepts(req.method()) {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method not allowed: use {}", endpoint.allow()),
        )
        .with(header::ALLOW, endpoint.allow()));
    }
    if matches!(endpoint, Endpoint::Alerts) {
        Params::parse(req.uri().query(), &[])?;
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "alerts": crate::alerts::firing() }),
        ));
    }
    if matches!(endpoint, Endpoint::Instances) {
        Params::parse(req.uri().query(), &[])?;
        return instances(shared).await;
    }
    let Some(engine) = shared.delivery.as_ref() else {
        return Err(error(
            StatusCode::CONFLICT,
            "no async routes: the queue is not open",
        ));
    };
    let queue = engine.queue();
    let query = req.uri().query();
    match endpoint {
        // Answered above, without the queue.
        Endpoint::Alerts => Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "alerts": crate::alerts::firing() }),
        )),
        Endpoint::Instances => instances(shared).await,
        Endpoint::Events => {
            let filter = list_filter(query)?;
            let limit = filter.limit;
            let events = queue.events(filter).await.map_err(queue_error)?;
            let next_before = next_page(&events, limit);
            Ok(json(
                StatusCode::OK,
                &EventList {
                    events,
                    next_before,
                },
            ))
        }
        Endpoint::DeadLetters => {
            let filter = list_filter(query)?;
            let limit = filter.limit;
            let dead_letters = queue.dead_letters(filter).await.map_err(queue_error)?;
            let next_before = next_page(&dead_letters, limit);
            Ok(json(
                StatusCode::OK,
                &DeadLetterList {
                    dead_letters,
                    next_before,
                },
            ))
        }
        Endpoint::Event(id) => {
            Params::parse(query, &[])?;
            match queue.event(id).await.map_err(queue_error)? {
                Some(view) => Ok(json(StatusCode::OK, &view)),
                None => Err(error(StatusCode::NOT_FOUND, &format!("no event `{id}`"))),
            }
        }
        Endpoint::ReplayEvent(id) => {
            let mut params = Params::parse(query, &["target"])?;
            let target = params.take("target");
            let n = engine
                .replay(ReplaySelection::Event {
                    id: id.to_string(),
                    target: target.clone(),
                })
                .await
                .map_err(queue_error)?;
            if n == 0 {
                // Say which part did not match: the event, or its delivery to the target.
                let known = queue.event(id).await.map_err(queue_error)?.is_some();
                let why = match (known, &target) {
                    (true, Some(t)) => format!("event `{id}` has no delivery to target `{t}`"),
                    (true, None) => format!("event `{id}` has no deliveries"),
                    (false, _) => format!("no event `{id}`"),
                };
                return Err(error(StatusCode::NOT_FOUND, &why));
            }
            tracing::info!(peer = %peer.ip().to_canonical(), event_id = %id, target = target.as_deref(), replayed = n, "replay requested");
            Ok(json(StatusCode::OK, &Replayed { replayed: n }))
        }
        Endpoint::ReplayDeadLetters => {
            let mut params = Params::parse(query, &["event", "all", "target", "route"])?;
            let event = params.take("event");
            let all = match params.take("all").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(bad_request("`all` must be `true` or `false`")),
            };
            match (&event, all) {
                (None, false) => {
                    return Err(bad_request(
                        "say what to replay: `event=ID` for one event's dead letters, or `all=true` (narrowed by `target` and `route`) for every dead letter",
                    ));
                }
                (Some(_), true) => {
                    return Err(bad_request("give `event=ID` or `all=true`, not both"));
                }
                _ => {}
            }
            let target = params.take("target");
            let route = params.take("route");
            let n = engine
                .replay(ReplaySelection::DeadLetters {
                    event: event.clone(),
                    target: target.clone(),
                    route: route.clone(),
                })
                .await
                .map_err(queue_error)?;
            if n == 0
                && let Some(id) = &event
            {
                let known = queue.event(id).await.map_err(queue_error)?.is_some();
                let why = if known {
                    format!("event `{id}` has no dead letters matching the selection")
                } else {
                    format!("no event `{id}`")
                };
                return Err(error(StatusCode::NOT_FOUND, &why));
            }
            tracing::info!(
                peer = %peer.ip().to_canonical(),
                event_id = event.as_deref(),
                target = target.as_deref(),
                route = route.as_deref(),
                replayed = n,
                "dead letters replay requested"
            );
            Ok(json(StatusCode::OK, &Replayed { replayed: n }))
        }
        Endpoint::Queue => {
            Params::parse(query, &[])?;
            let stats = queue.stats().await.map_err(queue_error)?;
            Ok(json(StatusCode::OK, &stats))
        }
    }
}

/// `GET /api/v1/instances`: the instances sharing the queue (this one alone on the embedded
/// queue), each with its config generation and digest; `config_versions` above 1 means they
/// do not all run the same config file.
async fn instances(shared: &Shared) -> Result<Response<Full<Bytes>>, Refusal> {
    let shared_queue = shared
        .delivery
        .as_ref()
        .and_then(|e| e.queue().shared().cloned());
    let (me, all) = match shared_queue {
        Some(q) => (
            q.instance_id().to_string(),
            q.instances().await.map_err(queue_error)?,
        ),
        None => {
            let snap = shared.snapshot.load();
            let me = crate::queue::nats::Instance {
                id: "local".into(),
                host: crate::app::hostname(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                generation: snap.generation,
                config_digest: snap.digest.clone(),
                started_at: crate::queue::rfc3339(crate::app::started_ms()),
                seen_at: crate::queue::rfc3339(crate::queue::now_ms()),
            };
            (me.id.clone(), vec![me])
        }
    };
    let versions: std::collections::BTreeSet<&str> =
        all.iter().map(|i| i.config_digest.as_str()).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "this": me,
            "config_versions": versions.len(),
            "instances": all,
        }),
    ))
}

#[derive(Serialize)]
struct EventList {
    events: Vec<crate::queue::EventView>,
    /// Set when the page is full: pass it as `before` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

#[derive(Serialize)]
struct DeadLetterList {
    dead_letters: Vec<crate::queue::EventView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

#[derive(Serialize)]
struct Replayed {
    replayed: usize,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn next_page(events: &[crate::queue::EventView], limit: usize) -> Option<String> {
    (events.len() >= limit)
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten()
}

/// Checks the bearer token against the running config's `admin.token`.
fn authorize(shared: &Shared, peer: SocketAddr, req: &Request<Incoming>) -> Result<(), Refusal> {
    let snapshot = shared.snapshot.load();
    let Some(expected) = snapshot
        .config
        .admin
        .as_ref()
        .and_then(|a| a.token.as_ref())
    else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "the admin API is off because no token is configured: set `admin.token` (e.g. `token: \"${file:/run/secrets/admin_token}\"`) and reload",
        ));
    };
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let given = match (values.next(), values.next()) {
        (Some(v), None) => bearer(v.as_bytes()),
        _ => None,
    };
    let Some(given) = given else {
        return Err(unauthorized(
            "missing `Authorization: Bearer <token>` header",
        ));
    };
    if token_matches(given, expected.expose().as_bytes()) {
        Ok(())
    } else {
        tracing::warn!(peer = %peer.ip().to_canonical(), path = req.uri().path(), "admin api: wrong token");
        Err(unauthorized("wrong token"))
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.first()?.is_ascii_whitespace() {
        return None;
    }
    let token = rest.trim_ascii_start();
    (!token.is_empty()).then_some(token)
}

/// Constant-time comparison: digests first, so neither the content nor the length of the
/// expected token shows in the timing.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

/// The query parameters an endpoint takes: each at most once, none unknown, none empty.
struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, Refusal> {
        let mut out = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                let takes = if allowed.is_empty() {
                    "this endpoint takes no query parameters".to_string()
                } else {
                    format!("this endpoint takes: {}", allowed.join(", "))
                };
                return Err(bad_request(&format!(
                    "unknown query parameter `{k}`: {takes}"
                )));
            }
            if v.is_empty() {
                return Err(bad_request(&format!(
                    "`{k}` is empty: give a value or leave it out"
                )));
            }
            if out.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(bad_request(&format!("`{k}` is given more than once")));
            }
        }
        Ok(Params(out))
    }

    fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }
}

fn list_filter(query: Option<&str>) -> Result<ListFilter, Refusal> {
    let mut p = Params::parse(query, &["route", "target", "before", "limit"])?;
    let limit = match p.take("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(bad_request(&format!(
                    "`limit` must be a whole number from 1 to {MAX_LIMIT}"
                )));
            }
        },
    };
    Ok(ListFilter {
        route: p.take("route"),
        target: p.take("target"),
        before: p.take("before"),
        limit,
    })
}

fn queue_error(e: QueueError) -> Refusal {
    tracing::error!(error = %e, "admin api: queue error");
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the queue cannot answer: {e}"),
    )
    .with(header::RETRY_AFTER, "5")
}

fn bad_request(message: &str) -> Refusal {
    error(StatusCode::BAD_REQUEST, message)
}

fn unauthorized(message: &str) -> Refusal {
    error(StatusCode::UNAUTHORIZED, message).with(header::WWW_AUTHENTICATE, "Bearer")
}

fn error(status: StatusCode, message: &str) -> Refusal {
    Refusal::new(status, message.to_string())
}

/// A request the API does not carry out: its status, the message and at most one header.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    header: Option<(header::HeaderName, &'static str)>,
}

impl Refusal {
    fn new(status: StatusCode, message: String) -> Refusal {
        Refusal {
            status,
            message,
            header: None,
        }
    }

    fn with(mut self, name: header::HeaderName, value: &'static str) -> Refusal {
        self.header = Some((name, value));
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = json(
            self.status,
            &ErrorBody {
                error: &self.message,
            },
        );
        if let Some((name, value)) = self.header {
            resp.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        resp
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let (status, mut body) = match serde_json::to_vec(value) {
        Ok(b) => (status, b),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":"cannot encode the answer"}"#.to_vec(),
        ),
    };
    body.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearerabc"), None);
        assert_eq!(bearer(b"Basic YWJjOmRlZg=="), None);
        assert_eq!(bearer(b""), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cre", b"s3cret"));
        assert!(!token_matches(b"s3cret!", b"s3cret"));
        assert!(!token_matches(b"", b"s3cret"));
    }

    #[test]
    fn endpoints() {
        assert!(matches!(
            Endpoint::of("/api/v1/events"),
            Some(Endpoint::Events)
        ));
        assert!(matches!(
            Endpoint::of("/api/v1/events/0193-ab"),
            Some(Endpoint::Event("0193-ab"))
        ));
        assert!(matches!(
            Endpoint::of("/api/v1/events/x/replay"),
            Some(Endpoint::ReplayEvent("x"))
        ));
        assert!(matches!(
            Endpoint::of("/api/v1/dlq/replay"),
            Some(Endpoint::ReplayDeadLetters)
        ));
        for bad in [
            "/api/v1",
            "/api/v1/",
            "/api/v1/events/",
            "/api/v1/events//replay",
            "/api/v1/events/a%2fb",
            "/api/v1/dlq/x",
            "/api/v1/queue/",
            "/api/v2/events",
        ] {
            assert!(Endpoint::of(bad).is_none(), "{bad}");
        }
        assert!(is_api("/api/v1"));
        assert!(is_api("/api/v1/anything"));
        assert!(!is_api("/api/v10"));
        assert!(!is_api("/healthz"));
    }

    #[test]
    fn query_parameters_are_strict() {
        let f = list_filter(Some("route=stripe&limit=10&before=abc")).expect("valid");
        assert_eq!(f.route.as_deref(), Some("stripe"));
        assert_eq!(f.limit, 10);
        assert_eq!(f.before.as_deref(), Some("abc"));
        assert_eq!(list_filter(None).expect("valid").limit, DEFAULT_LIMIT);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "route=",
            "route=a&route=b",
            "rout=a",
        ] {
            let refusal = list_filter(Some(bad)).expect_err(bad);
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
