//! The ordered checks a request passes before its body is read, and the one place that maps
//! every failure to a status code, a log/metric label and the generic body the sender sees.
//!
//! Order, cheapest and least revealing first:
//! 1. canonical path (400): a non-canonical path is never matched loosely, whatever routes exist;
//! 2. route by path, host, method (404 / 405);
//! 3. client address from the peer and trusted proxies (400 when a trusted proxy's header is
//!    unreadable), then the route's allowlist (403) — before the body is read, so a refused
//!    client costs no body bandwidth;
//! 4. declared `Content-Length` against the route's limit (413), also before reading.
//!
//! After the body is read (`ingress`): 5. the signature on the exact bytes (401), then the
//! route's mode decides what happens; later stages (event extraction, the durable queue) slot
//! in after step 5.

use std::net::IpAddr;

use http::{HeaderMap, Method, StatusCode};

use crate::{
    client_ip,
    path::{self, PathError},
    route::Lookup,
    snapshot::Snapshot,
};

/// Why a request was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The path is not in canonical form.
    NonCanonicalPath(PathError),
    /// The request could not be read (malformed framing, bad host).
    MalformedRequest,
    /// No route at this path.
    NoRoute,
    /// The route exists with other methods.
    MethodNotAllowed,
    /// A trusted proxy sent an unreadable `X-Forwarded-For` / `Forwarded`.
    MalformedForwarded,
    /// The client address is not in the route's `allow_ips`.
    IpNotAllowed,
    /// The body is over the route's `max_body`.
    BodyTooLarge,
    /// The body did not arrive within `server.body_timeout`.
    BodyTimeout,
    /// The signature check failed, for this reason.
    Unverified(crate::verify::Failure),
    /// Sync mode: the target could not be reached or broke the connection.
    TargetUnreachable,
    /// Sync mode: the target did not answer within its `timeout`.
    TargetTimeout,
    /// Sync mode: the target's answer was unusable (too large).
    TargetBadResponse,
    /// Async mode: the queue cannot take the event now (answered with `Retry-After`).
    QueueUnavailable,
    /// The event's version is not accepted and the route says `on_unknown: reject`.
    UnknownVersion,
}

impl Rejection {
    /// The HTTP status answered.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Rejection::NonCanonicalPath(_)
            | Rejection::MalformedRequest
            | Rejection::MalformedForwarded
            | Rejection::UnknownVersion => StatusCode::BAD_REQUEST,
            Rejection::NoRoute => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::IpNotAllowed => StatusCode::FORBIDDEN,
            Rejection::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::Unverified(_) => StatusCode::UNAUTHORIZED,
            Rejection::TargetUnreachable | Rejection::TargetBadResponse => StatusCode::BAD_GATEWAY,
            Rejection::TargetTimeout => StatusCode::GATEWAY_TIMEOUT,
            Rejection::QueueUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The reason, for the log line and metric labels. A fixed set of values.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Rejection::NonCanonicalPath(e) => e.as_str(),
            Rejection::MalformedRequest => "malformed_request",
            Rejection::NoRoute => "no_route",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::MalformedForwarded => "malformed_forwarded",
            Rejection::IpNotAllowed => "ip_not_allowed",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::Unverified(f) => f.as_label(),
            Rejection::TargetUnreachable => "target_unreachable",
            Rejection::TargetTimeout => "target_timeout",
            Rejection::TargetBadResponse => "target_bad_response",
            Rejection::QueueUnavailable => "queue_unavailable",
            Rejection::UnknownVersion => "unknown_version",
        }
    }

    /// The short, generic body sent back: it names the status, never the detail.
    pub(crate) fn body(self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "bad request\n",
            StatusCode::NOT_FOUND => "not found\n",
            StatusCode::METHOD_NOT_ALLOWED => "method not allowed\n",
            StatusCode::UNAUTHORIZED => "unauthorized\n",
            StatusCode::FORBIDDEN => "forbidden\n",
            StatusCode::PAYLOAD_TOO_LARGE => "payload too large\n",
            StatusCode::REQUEST_TIMEOUT => "request timeout\n",
            StatusCode::BAD_GATEWAY => "bad gateway\n",
            StatusCode::GATEWAY_TIMEOUT => "gateway timeout\n",
            StatusCode::SERVICE_UNAVAILABLE => "service unavailable\n",
            _ => "error\n",
        }
    }
}

/// The parts of a request head the checks look at.
pub(crate) struct Head<'a> {
    pub(crate) peer: IpAddr,
    pub(crate) method: &'a Method,
    /// Lowercase, without port.
    pub(crate) host: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) content_length: Option<u64>,
}

/// A request that passed the head checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    /// Index of the route in the snapshot.
    pub(crate) route: usize,
    /// The client's address (after trusted proxies).
    pub(crate) client_ip: IpAddr,
}

/// A rejection with what was known when it happened, for the log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused {
    pub(crate) rejection: Rejection,
    /// The matched route, if the request got that far.
    pub(crate) route: Option<usize>,
    /// The client address, if it was determined.
    pub(crate) client_ip: Option<IpAddr>,
}

impl From<Rejection> for Refused {
    fn from(rejection: Rejection) -> Self {
        Refused {
            rejection,
            route: None,
            client_ip: None,
        }
    }
}

/// Runs the head checks in order.
pub(crate) fn admit(snap: &Snapshot, head: &Head<'_>) -> Result<Admitted, Refused> {
    path::check(head.path).map_err(|e| Refused::from(Rejection::NonCanonicalPath(e)))?;
    let route = match snap.routes.find(head.host, head.path, head.method) {
        Lookup::Found(i) => i,
        Lookup::MethodNotAllowed(i) => {
            return Err(Refused {
                rejection: Rejection::MethodNotAllowed,
                route: Some(i),
                client_ip: None,
            });
        }
        Lookup::NoRoute => return Err(Rejection::NoRoute.into()),
    };
    let r = &snap.config.routes[route];
    let client_ip = client_ip::resolve(head.peer, head.headers, &snap.config.trusted_proxies)
        .map_err(|_| Refused {
            rejection: Rejection::MalformedForwarded,
            route: Some(route),
            client_ip: None,
        })?;
    let fail = |rejection| Refused {
        rejection,
        route: Some(route),
        client_ip: Some(client_ip),
    };
    if !client_ip::allowed(r.allow_ips.as_deref(), client_ip) {
        return Err(fail(Rejection::IpNotAllowed));
    }
    if head.content_length.is_some_and(|len| len > r.max_body) {
        return Err(fail(Rejection::BodyTooLarge));
    }
    Ok(Admitted { route, client_ip })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_maps_to_its_status() {
        let cases = [
            (Rejection::NonCanonicalPath(PathError::DotSegment), 400),
            (Rejection::MalformedRequest, 400),
            (Rejection::MalformedForwarded, 400),
            (Rejection::NoRoute, 404),
            (Rejection::MethodNotAllowed, 405),
            (Rejection::IpNotAllowed, 403),
            (Rejection::BodyTooLarge, 413),
            (Rejection::BodyTimeout, 408),
            (
                Rejection::Unverified(crate::verify::Failure::SignatureMismatch),
                401,
            ),
            (Rejection::Unverified(crate::verify::Failure::Expired), 401),
            (Rejection::TargetUnreachable, 502),
            (Rejection::TargetBadResponse, 502),
            (Rejection::TargetTimeout, 504),
            (Rejection::QueueUnavailable, 503),
            (Rejection::UnknownVersion, 400),
        ];
        for (r, status) in cases {
            assert_eq!(r.status().as_u16(), status, "{r:?}");
            assert!(
                !r.body().contains(r.as_label()),
                "body must stay generic: {r:?}"
            );
        }
    }
}
