//! The per-request handler: head checks → body → dispatch by mode → answer, and one log line.
//!
//! The snapshot is loaded once per request, so a reload in the middle never mixes two configs.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use sha2::Digest as _;

use crate::{
    config::{Mode, OnUnknown},
    delivery::Engine,
    forward::{Forwarder, Origin},
    glob,
    listener::Activity,
    pipeline::{self, Admitted, Head, Refused, Rejection},
    queue::{Appended, NewEvent, StoredEvent},
    snapshot::Snapshot,
};

/// State shared by every connection.
pub(crate) struct Shared {
    /// The running configuration.
    pub(crate) snapshot: ArcSwap<Snapshot>,
    /// Pooled client for targets.
    pub(crate) forwarder: Forwarder,
    /// The queue and delivery engine, when async routes were configured at start.
    pub(crate) delivery: Option<Arc<Engine>>,
}

/// What became of a request that was not refused.
pub(crate) struct Handled {
    admitted: Admitted,
    event: crate::event::Event,
    /// `forwarded`, `accepted` or `duplicate`.
    outcome: &'static str,
    /// The router's event id (async).
    id: Option<String>,
    response: Response<Full<Bytes>>,
}

/// What the handler knows about the connection a request came on.
pub(crate) struct Conn {
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) activity: Arc<Activity>,
}

/// Handles one request. Never fails: every problem becomes an answer.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _busy = conn.activity.begin_request();
    let started = Instant::now();
    let snap = shared.snapshot.load_full();
    let (mut parts, body) = req.into_parts();
    let outcome = process(&shared, &snap, &conn, &mut parts, body).await;
    let elapsed = started.elapsed().as_secs_f64();
    let elapsed_ms = elapsed * 1000.0;
    let metrics = crate::metrics::get();
    let peer = conn.peer.ip().to_canonical();
    let response = match outcome {
        Ok(Handled {
            admitted,
            event,
            outcome,
            id,
            response: resp,
        }) => {
            let route_name = snap.config.routes[admitted.route].name.as_str();
            metrics.request(route_name, outcome, elapsed);
            tracing::info!(
                route = route_name,
                outcome,
                status = resp.status().as_u16(),
                method = %parts.method,
                event_type = event.kind.as_deref(),
                event_id = event.id.as_deref(),
                id = id.as_deref(),
                client = %admitted.client_ip,
                peer = %peer,
                latency_ms = elapsed_ms,
                "request"
            );
            resp
        }
        Err(Refused {
            rejection,
            route,
            client_ip,
        }) => {
            let route_name = route
                .map(|i| snap.config.routes[i].name.as_str())
                .unwrap_or(crate::metrics::NO_ROUTE);
            metrics.request(route_name, rejection.as_label(), elapsed);
            match rejection {
                Rejection::Unverified(f) => metrics
                    .verification_failures
                    .with_label_values(&[route_name, f.as_label()])
                    .inc(),
                Rejection::IpNotAllowed => metrics.ip_denied.with_label_values(&[route_name]).inc(),
                _ => {}
            }
            tracing::info!(
                route = route_name,
                outcome = "rejected",
                reason = rejection.as_label(),
                status = rejection.status().as_u16(),
                method = %parts.method,
                client = client_ip.map(tracing::field::display),
                peer = %peer,
                latency_ms = elapsed_ms,
                "request"
            );
            let mut resp = rejection_response(rejection);
            if rejection == Rejection::QueueUnavailable {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            }
            if rejection == Rejection::MethodNotAllowed
                && let Some(i) = route
            {
                resp.headers_mut()
                    .insert(header::ALLOW, snap.runtime[i].allow.clone());
            }
            resp
        }
    };
    Ok(response)
}

type Outcome = Result<Handled, Refused>;

async fn process(
    shared: &Shared,
    snap: &Snapshot,
    conn: &Conn,
    parts: &mut http::request::Parts,
    body: Incoming,
) -> Outcome {
    let host = request_host(parts)?;
    transfer_coding(parts)?;
    let content_length = content_length(parts)?;
    let head = Head {
        peer: conn.peer.ip(),
        method: &parts.method,
        host: host.as_deref(),
        path: parts.uri.path(),
        headers: &parts.headers,
        content_length,
    };
    let admitted = pipeline::admit(snap, &head)?;
    let route_index = admitted.route;
    let fail = |rejection| Refused {
        rejection,
        route: Some(route_index),
        client_ip: Some(admitted.client_ip),
    };
    let route = &snap.config.routes[route_index];

    let body = read_body(body, route.max_body, snap).await.map_err(fail)?;
    crate::metrics::get()
        .request_body
        .with_label_values(&[&route.name])
        .observe(body.len() as f64);

    if let Some(verifier) = &snap.runtime[route_index].verifier {
        // Only a few schemes sign the URL; the others need not have it built.
        let url = match &route.verify {
            Some(v) if v.signs_url() => signed_url(route, parts, conn.tls),
            _ => String::new(),
        };
        let req = crate::verify::Request {
            url: &url,
            headers: &parts.headers,
            body: &body,
        };
        verifier
            .verify(&req, unix_now())
            .map_err(|f| fail(Rejection::Unverified(f)))?;
    }
    let origin = Origin {
        peer: conn.peer.ip(),
        peer_trusted: is_trusted(conn.peer.ip(), snap),
        tls: conn.tls,
    };
    match route.mode {
        Mode::Sync => {
            // In sync mode the event's type and id only label the request's log line: skip
            // reading them (a JSON body parse for most providers) when that line is not written.
            let (event, version) = {
                let json = crate::event::Body::new(&body);
                let event = if tracing::enabled!(tracing::Level::INFO) {
                    crate::event::extract(&route.event, &parts.headers, &json)
                } else {
                    crate::event::Event::default()
                };
                (event, version_of(route, &parts.headers, &json))
            };
            // The version check applies to both modes; sync passes the version on too.
            if let (Some(spec), Some(v)) = (&route.version, version.map_err(fail)?)
                && let Ok(v) = HeaderValue::from_str(&v)
            {
                parts.headers.insert(spec.header.clone(), v);
            }
            let target = &snap.runtime[route_index].target;
            let response = shared
                .forwarder
                .forward(target, parts, body, &origin)
                .await
                .map_err(fail)?;
            Ok(Handled {
                admitted,
                event,
                outcome: "forwarded",
                id: None,
                response,
            })
        }
        Mode::Async => {
            let engine = shared
                .delivery
                .as_ref()
                .ok_or_else(|| fail(Rejection::QueueUnavailable))?;
            let (event, version) = {
                let json = crate::event::Body::new(&body);
                let event = crate::event::extract(&route.event, &parts.headers, &json);
                (event, version_of(route, &parts.headers, &json))
            };
            let version = version.map_err(fail)?;
            let targets: Vec<String> = route
                .deliver
                .iter()
                .filter(|d| {
                    glob::any(&d.events, event.kind.as_deref())
                        && glob::any(&d.versions, version.as_deref())
                })
                .map(|d| d.target.clone())
                .collect();
            let query = parts.uri.query().map(str::to_string);
            let mut headers = crate::forward::passed_on_headers(parts, &origin);
            if let (Some(spec), Some(v)) = (&route.version, &version) {
                headers.remove(&spec.header);
                if let Ok(v) = HeaderValue::from_str(v) {
                    headers.insert(spec.header.clone(), v);
                }
            }
            let window_ms = i64::try_from(route.dedup_window.as_millis()).unwrap_or(i64::MAX);
            let dedup_key = (window_ms > 0).then(|| match &event.id {
                Some(id) => format!("id:{id}"),
                None => format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body))),
            });
            let new = NewEvent {
                id: uuid::Uuid::now_v7().to_string(),
                route: route.name.clone(),
                dedup_key,
                dedup_window_ms: window_ms,
                provider_id: event.id.clone(),
                kind: event.kind.clone(),
                version,
                received_ms: crate::queue::now_ms(),
                query,
                headers,
                body,
                targets,
            };
            let id = new.id.clone();
            // Storing and scheduling run in a task of their own: if the sender hangs up while
            // the commit is under way, this request is dropped but the event, once stored,
            // is still scheduled for delivery.
            let store = {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let stored = Arc::new(StoredEvent::from_new(&new));
                    let targets = new.targets.clone();
                    let appended = engine.queue().append(new).await;
                    if let Ok(Appended::Stored) = appended {
                        engine.enqueue(stored, &targets);
                    }
                    appended
                })
            };
            let appended = store.await.unwrap_or(Err(crate::queue::QueueError::Closed));
            match appended {
                Ok(Appended::Stored) => Ok(Handled {
                    admitted,
                    event,
                    outcome: "accepted",
                    response: async_answer(StatusCode::ACCEPTED, "accepted\n", &id),
                    id: Some(id),
                }),
                Ok(Appended::Duplicate { id }) => Ok(Handled {
                    admitted,
                    event,
                    outcome: "duplicate",
                    response: async_answer(StatusCode::OK, "duplicate\n", &id),
                    id: Some(id),
                }),
                Err(e) => {
                    tracing::error!(route = %route.name, error = %e, "event not stored");
                    Err(fail(Rejection::QueueUnavailable))
                }
            }
        }
    }
}

/// The event's version per the route's `version` block; `None` when the route has none or
/// the event carries none and there is no default. An unknown version is refused when the
/// route says `on_unknown: reject`.
fn version_of(
    route: &crate::config::Route,
    headers: &http::HeaderMap,
    body: &crate::event::Body<'_>,
) -> Result<Option<String>, Rejection> {
    let Some(spec) = &route.version else {
        return Ok(None);
    };
    let version = crate::event::read(&spec.from, headers, body).or_else(|| spec.default.clone());
    let known = version.is_some() && glob::any(&spec.accept, version.as_deref());
    if !known && spec.on_unknown == OnUnknown::Reject {
        return Err(Rejection::UnknownVersion);
    }
    Ok(version)
}

fn async_answer(status: StatusCode, body: &'static str, id: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut()
            .insert(crate::delivery::EVENT_ID.clone(), v);
    }
    resp
}

/// The URL the provider called, for schemes that sign it: the route's `verify.url` when set,
/// else rebuilt from the request as this listener received it.
fn signed_url(route: &crate::config::Route, parts: &http::request::Parts, tls: bool) -> String {
    if let Some(v) = &route.verify
        && let Some(url) = &v.url
    {
        // Twilio signs the query it sends (e.g. `bodySHA256` on JSON deliveries): the
        // configured origin and path, plus the query as received.
        let query = parts
            .uri
            .query()
            .filter(|_| v.scheme == crate::verify::SchemeName::Twilio && !url.contains('?'));
        return match query {
            Some(q) => format!("{url}?{q}"),
            None => url.clone(),
        };
    }
    let scheme = if tls { "https" } else { "http" };
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{scheme}://{host}{pq}")
}

/// The wall clock in unix seconds, read once per verified request.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn is_trusted(peer: IpAddr, snap: &Snapshot) -> bool {
    let peer = peer.to_canonical();
    snap.config
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&peer))
}

/// Reads the whole body, up to `max` bytes, within `server.body_timeout`.
async fn read_body(body: Incoming, max: u64, snap: &Snapshot) -> Result<Bytes, Rejection> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let mut read = std::pin::pin!(Limited::new(body, limit).collect());
    // Webhook bodies are small and usually arrive with the head: try once before arming the
    // timer, so the common case costs no timer registration.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await;
    let result = match first {
        std::task::Poll::Ready(r) => Ok(r),
        std::task::Poll::Pending => {
            tokio::time::timeout(snap.config.server.body_timeout, read).await
        }
    };
    match result {
        Err(_) => Err(Rejection::BodyTimeout),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Rejection::BodyTooLarge)
        }
        Ok(Err(_)) => Err(Rejection::MalformedRequest),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The request's host, lowercase and without port: the URI authority (HTTP/2, absolute-form)
/// or the single `Host` header. An HTTP/1.1 request without `Host` (RFC 9112 3.2), a host with
/// userinfo, or a port that is not a number is malformed (400): a host is never read loosely.
fn request_host(parts: &http::request::Parts) -> Result<Option<String>, Rejection> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejection::MalformedRequest);
    }
    if header_host.is_none() && parts.version == http::Version::HTTP_11 {
        return Err(Rejection::MalformedRequest);
    }
    let authority = match (parts.uri.authority(), header_host) {
        (Some(a), _) => a.clone(),
        (None, Some(h)) => h
            .to_str()
            .ok()
            .and_then(|s| s.parse::<http::uri::Authority>().ok())
            .ok_or(Rejection::MalformedRequest)?,
        (None, None) => return Ok(None),
    };
    if let Some(h) = header_host
        && !plain_host(h.as_bytes())
    {
        return Err(Rejection::MalformedRequest);
    }
    if !plain_host(authority.as_str().as_bytes()) {
        return Err(Rejection::MalformedRequest);
    }
    Ok(Some(
        authority.host().trim_end_matches('.').to_ascii_lowercase(),
    ))
}

/// `uri-host [ ":" port ]` (RFC 9110 7.2) with no userinfo: a non-empty host and, when there
/// is a port, only digits and at most 65535.
fn plain_host(v: &[u8]) -> bool {
    if v.is_empty() || v.contains(&b'@') {
        return false;
    }
    // The port is after the last `:` that follows the bracketed IPv6 literal, if any.
    let after_literal = v.iter().rposition(|&b| b == b']').map_or(0, |i| i + 1);
    match v[after_literal..].iter().rposition(|&b| b == b':') {
        None => true,
        Some(i) => {
            let port = &v[after_literal + i + 1..];
            let host = &v[..after_literal + i];
            !host.is_empty()
                && !port.is_empty()
                && port.len() <= 5
                && port.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(port)
                    .ok()
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_some()
        }
    }
}

/// HTTP/1: `Transfer-Encoding`, when present, must be exactly `chunked`. hyper checks only
/// that the last coding is `chunked` and drops the others, so `gzip, chunked` or `chunked,
/// chunked` would pass on still-coded bytes as the body: refused (400) instead.
fn transfer_coding(parts: &http::request::Parts) -> Result<(), Rejection> {
    let mut codings = parts
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(Rejection::MalformedRequest),
    }
}

/// The declared body length. hyper has already refused malformed framing; with both
/// `Content-Length` and `Transfer-Encoding`, it reads the chunked body, drops the length and
/// closes the connection after the answer (RFC 9112 6.3), so nothing can be smuggled behind it.
fn content_length(parts: &http::request::Parts) -> Result<Option<u64>, Rejection> {
    match parts.headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(Rejection::MalformedRequest),
    }
}

fn rejection_response(r: Rejection) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(r.body().as_bytes())));
    *resp.status_mut() = r.status();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::plain_host;

    #[test]
    fn hosts_are_plain() {
        for ok in [
            "a",
            "hooks.example.com",
            "hooks.example.com:443",
            "[::1]",
            "[::1]:8080",
            "1.2.3.4:1",
        ] {
            assert!(plain_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "u@h", "h:abc", "h:-1", "h:", "h:65536", ":80", "[::1]:x", "h:123456",
        ] {
            assert!(!plain_host(bad.as_bytes()), "{bad}");
        }
    }
}
