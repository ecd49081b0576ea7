//! Test helpers shared by the scheme modules' unit tests.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{BadConfig, Failure, Options, Request, SchemeName, Verifier};

/// The URL test requests claim; only schemes that sign `{url}` read it.
pub(super) const URL: &str = "https://example.com/webhooks";

/// A header map from `(name, value)` pairs; a name given twice gets both values.
pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("test header name"),
            HeaderValue::from_str(v).expect("test header value"),
        );
    }
    map
}

/// Sets `name` to raw `value` when HTTP can carry it; false when it cannot.
pub(super) fn set_raw(map: &mut HeaderMap, name: &str, value: &[u8]) -> bool {
    match (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value),
    ) {
        (Ok(n), Ok(v)) => {
            map.insert(n, v);
            true
        }
        _ => false,
    }
}

/// A verifier that must build.
pub(super) fn verifier(
    scheme: SchemeName,
    secrets: &[&str],
    tolerance: Option<Duration>,
    options: &Options,
) -> Verifier {
    Verifier::new(scheme, secrets, tolerance, options).expect("verifier builds")
}

/// Why a verifier must not build.
pub(super) fn refused(scheme: SchemeName, secrets: &[&str], options: &Options) -> BadConfig {
    match Verifier::new(scheme, secrets, None, options) {
        Ok(v) => panic!("expected a refusal, built {v:?}"),
        Err(e) => e,
    }
}

/// Runs `v` on `headers` and `body` at `now`.
pub(super) fn check(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Failure> {
    v.verify(
        &Request {
            url: URL,
            headers,
            body,
        },
        now,
    )
}
