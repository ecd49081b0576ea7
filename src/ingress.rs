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
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::{
    config::Mode,
    forward::{Forwarder, Origin},
    listener::Activity,
    pipeline::{self, Admitted, Head, Refused, Rejection},
    snapshot::Snapshot,
};

/// State shared by every connection.
pub(crate) struct Shared {
    /// The running configuration.
    pub(crate) snapshot: ArcSwap<Snapshot>,
    /// Pooled client for targets.
    pub(crate) forwarder: Forwarder,
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
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let peer = conn.peer.ip().to_canonical();
    let response = match outcome {
        Ok((admitted, event, resp)) => {
            tracing::info!(
                route = %snap.config.routes[admitted.route].name,
                outcome = "forwarded",
                status = resp.status().as_u16(),
                method = %parts.method,
                event_type = event.kind.as_deref(),
                event_id = event.id.as_deref(),
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
                .unwrap_or("_none");
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
            if rejection == Rejection::MethodNotAllowed {
                if let Some(i) = route {
                    resp.headers_mut()
                        .insert(header::ALLOW, snap.runtime[i].allow.clone());
                }
            }
            resp
        }
    };
    Ok(response)
}

type Outcome = Result<(Admitted, crate::event::Event, Response<Full<Bytes>>), Refused>;

async fn process(
    shared: &Shared,
    snap: &Snapshot,
    conn: &Conn,
    parts: &mut http::request::Parts,
    body: Incoming,
) -> Outcome {
    let host = request_host(parts)?;
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
    // In sync mode the event's type and id only label the request's log line: skip reading
    // them (a JSON body parse for most providers) when that line is not written.
    let event = if tracing::enabled!(tracing::Level::INFO) {
        crate::event::extract(&route.event, &parts.headers, &body)
    } else {
        crate::event::Event::default()
    };

    match route.mode {
        Mode::Sync => {
            let origin = Origin {
                peer: conn.peer.ip(),
                peer_trusted: is_trusted(conn.peer.ip(), snap),
                tls: conn.tls,
            };
            let target = &snap.runtime[route_index].target;
            let resp = shared
                .forwarder
                .forward(target, parts, body, &origin)
                .await
                .map_err(fail)?;
            Ok((admitted, event, resp))
        }
        // Validation refuses async routes while this build has no durable queue; should one
        // get here anyway, the sender is told to retry rather than the event being dropped.
        Mode::Async => Err(fail(Rejection::QueueUnavailable)),
    }
}

/// The URL the provider called, for schemes that sign it: the route's `verify.url` when set,
/// else rebuilt from the request as this listener received it.
fn signed_url(route: &crate::config::Route, parts: &http::request::Parts, tls: bool) -> String {
    if let Some(v) = &route.verify {
        if let Some(url) = &v.url {
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
/// or the single `Host` header.
fn request_host(parts: &http::request::Parts) -> Result<Option<String>, Rejection> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejection::MalformedRequest);
    }
    let raw = match parts.uri.authority() {
        Some(a) => a.host().to_string(),
        None => match header_host {
            Some(h) => {
                let s = h.to_str().map_err(|_| Rejection::MalformedRequest)?;
                let authority: http::uri::Authority =
                    s.parse().map_err(|_| Rejection::MalformedRequest)?;
                authority.host().to_string()
            }
            None => return Ok(None),
        },
    };
    Ok(Some(raw.trim_end_matches('.').to_ascii_lowercase()))
}

/// The declared body length. hyper has already refused conflicting or malformed framing.
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
