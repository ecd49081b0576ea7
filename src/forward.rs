//! Sync mode: forward the raw request to the route's target and relay its answer.
//!
//! The body is sent byte for byte. Headers are copied except hop-by-hop ones (RFC 9110 §7.6.1
//! and any named in `Connection`); `Host` becomes the target's. `X-Forwarded-For` gets the peer
//! appended when the peer is a trusted proxy; from any other peer the header is replaced by the
//! peer's address, so a client cannot plant addresses that downstream services would believe.
//! Connections to targets are pooled and kept alive; redirects are relayed, never followed.
//! The target's whole answer must arrive within its `timeout` (else 504), so a 504 can still be
//! sent when it is late.

use std::net::IpAddr;

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, Uri, Version,
    header::{self, HOST},
    uri::PathAndQuery,
};
use http_body_util::{BodyExt, Full, Limited};

use crate::{client_ip::X_FORWARDED_FOR, config::Target, pipeline::Rejection};

pub(crate) mod pool;

/// Largest target answer relayed in sync mode; webhook answers are small.
const MAX_RESPONSE_BODY: usize = 16 << 20;

/// Sends requests to targets over pooled keep-alive connections.
pub(crate) struct Forwarder {
    pool: pool::Pool,
}

/// What is known about the inbound request besides its head and body.
pub(crate) struct Origin {
    /// The socket peer.
    pub(crate) peer: IpAddr,
    /// Whether the peer is a trusted proxy (its forwarding headers are kept).
    pub(crate) peer_trusted: bool,
    /// Whether the request came over TLS.
    pub(crate) tls: bool,
}

impl Forwarder {
    /// A forwarder trusting the system's root certificates for `https://` targets.
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Forwarder {
            pool: pool::Pool::new(pool::client_tls()?),
        })
    }

    /// Sends the request to `target` and returns its answer, or why not.
    pub(crate) async fn forward(
        &self,
        target: &Target,
        parts: &mut http::request::Parts,
        body: Bytes,
        origin: &Origin,
    ) -> Result<Response<Full<Bytes>>, Rejection> {
        let req = outbound_request(target, parts, body, origin)?;
        let exchange =
            async {
                let (resp, lease) = self.pool.send(&target.url, req).await.map_err(|e| {
                    tracing::debug!(target = %target.name, error = %e, "target request failed");
                    Rejection::TargetUnreachable
                })?;
                let (parts, body) = resp.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BODY).collect().await.map_err(|e| {
                tracing::debug!(target = %target.name, error = %e, "target answer unreadable");
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    Rejection::TargetBadResponse
                } else {
                    Rejection::TargetUnreachable
                }
            })?;
                self.pool.put(lease);
                Ok::<_, Rejection>((parts, body.to_bytes()))
            };
        let (mut parts, body) = tokio::time::timeout(target.timeout, exchange)
            .await
            .map_err(|_| Rejection::TargetTimeout)??;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.version = Version::HTTP_11;
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

fn outbound_request(
    target: &Target,
    inbound: &mut http::request::Parts,
    body: Bytes,
    origin: &Origin,
) -> Result<Request<Full<Bytes>>, Rejection> {
    let uri = target_uri(&target.url, inbound.uri.query()).ok_or(Rejection::MalformedRequest)?;
    let mut headers = passed_on_headers(inbound, origin);
    if let Some(authority) = target.url.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(HOST, v);
    }
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = inbound.method.clone();
    // Connections are to the target itself, so the request line carries the path only.
    *req.uri_mut() = uri
        .path_and_query()
        .cloned()
        .map_or_else(|| Uri::from_static("/"), Uri::from);
    *req.headers_mut() = headers;
    Ok(req)
}

/// The inbound headers as targets get them (sync and async alike): hop-by-hop ones, `Host`,
/// `Content-Length` and any `Hookrouter-*` removed, forwarding headers set. Moves the
/// headers out of `inbound`, which does not need them afterwards.
pub(crate) fn passed_on_headers(inbound: &mut http::request::Parts, origin: &Origin) -> HeaderMap {
    let mut headers = std::mem::take(&mut inbound.headers);
    strip_hop_by_hop(&mut headers);
    let original_host = headers.remove(HOST).or_else(|| {
        inbound
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    headers.remove(header::CONTENT_LENGTH);
    // The router's own headers name what the router did; a sender cannot set them.
    let planted: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("hookrouter-"))
        .cloned()
        .collect();
    for k in planted {
        headers.remove(k);
    }
    forwarding_headers(&mut headers, original_host, origin);
    headers
}

/// The target URL with the inbound query string appended to any query it already has.
pub(crate) fn target_uri(base: &Uri, inbound_query: Option<&str>) -> Option<Uri> {
    let Some(q) = inbound_query.filter(|q| !q.is_empty()) else {
        return Some(base.clone());
    };
    let path = base.path();
    let pq = match base.query() {
        Some(bq) if !bq.is_empty() => format!("{path}?{bq}&{q}"),
        _ => format!("{path}?{q}"),
    };
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).ok()?);
    Uri::from_parts(parts).ok()
}

fn forwarding_headers(
    headers: &mut HeaderMap,
    original_host: Option<HeaderValue>,
    origin: &Origin,
) {
    let peer = origin.peer.to_canonical().to_string();
    let xff = if origin.peer_trusted {
        let prior: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            peer
        } else {
            format!("{}, {peer}", prior.join(", "))
        }
    } else {
        headers.remove(header::FORWARDED);
        headers.remove("x-forwarded-proto");
        headers.remove("x-forwarded-host");
        peer
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !headers.contains_key("x-forwarded-proto") {
        let proto = if origin.tls { "https" } else { "http" };
        headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    }
    if let Some(host) = original_host
        && !headers.contains_key("x-forwarded-host")
    {
        headers.insert("x-forwarded-host", host);
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    headers.remove(header::UPGRADE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("stripe-signature", HeaderValue::from_static("t=1,v1=ab"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("stripe-signature"));
    }

    #[test]
    fn query_is_carried() {
        let base: Uri = "http://t:1/in?a=1".parse().expect("uri");
        assert_eq!(
            target_uri(&base, Some("b=2")).map(|u| u.to_string()),
            Some("http://t:1/in?a=1&b=2".into())
        );
        let base: Uri = "http://t:1/in".parse().expect("uri");
        assert_eq!(
            target_uri(&base, Some("b=2")).map(|u| u.to_string()),
            Some("http://t:1/in?b=2".into())
        );
        assert_eq!(
            target_uri(&base, None).map(|u| u.to_string()),
            Some("http://t:1/in".into())
        );
    }

    #[test]
    fn forwarded_for_from_untrusted_peer_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let origin = Origin {
            peer: "203.0.113.9".parse().expect("ip"),
            peer_trusted: false,
            tls: false,
        };
        forwarding_headers(&mut h, None, &origin);
        assert_eq!(
            h.get(X_FORWARDED_FOR).map(|v| v.as_bytes()),
            Some(&b"203.0.113.9"[..])
        );
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"http"[..])
        );

        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
        let origin = Origin {
            peer: "::ffff:10.0.0.1".parse().expect("ip"),
            peer_trusted: true,
            tls: true,
        };
        forwarding_headers(&mut h, None, &origin);
        assert_eq!(
            h.get(X_FORWARDED_FOR).map(|v| v.as_bytes()),
            Some(&b"198.51.100.1, 10.0.0.1"[..])
        );
    }
}
