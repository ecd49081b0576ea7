//! The client's address and the allowlist check. Pure functions over the peer address and
//! headers; tests at the bottom.
//!
//! The socket peer is the client unless it is a trusted proxy. Then `X-Forwarded-For` (or, when
//! there is none, `Forwarded`) is read from the right: each trusted proxy added the entry to its
//! left, so the first entry from the right that is not a trusted proxy is the client. Entries
//! further left were written by the client itself and are never believed. IPv4-mapped IPv6
//! addresses (`::ffff:192.0.2.1`) are treated as the IPv4 address everywhere.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, header::FORWARDED};
use ipnet::IpNet;

/// `X-Forwarded-For`.
pub(crate) const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// A forwarding header from a trusted proxy that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MalformedForwarded;

/// The client address for a request from `peer`.
pub(crate) fn resolve(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Result<IpAddr, MalformedForwarded> {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return Ok(peer);
    }
    let xff = headers.get_all(X_FORWARDED_FOR);
    if xff.iter().next().is_some() {
        let mut hops = Vec::new();
        for value in xff {
            let s = value.to_str().map_err(|_| MalformedForwarded)?;
            hops.extend(s.split(',').map(str::trim));
        }
        return pick(peer, hops.into_iter(), trusted, parse_xff_entry);
    }
    let fwd = headers.get_all(FORWARDED);
    if fwd.iter().next().is_some() {
        let mut hops = Vec::new();
        for value in fwd {
            let s = value.to_str().map_err(|_| MalformedForwarded)?;
            for element in s.split(',') {
                let for_value = element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .map(|(_, v)| v.trim());
                hops.push(for_value.ok_or(MalformedForwarded)?);
            }
        }
        return pick(peer, hops.into_iter(), trusted, parse_forwarded_for);
    }
    Ok(peer)
}

/// Walks the hops from the right; the first one that is not trusted is the client. When every
/// hop is trusted, the leftmost is.
fn pick<'a>(
    peer: IpAddr,
    hops: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpNet],
    parse: fn(&str) -> Option<IpAddr>,
) -> Result<IpAddr, MalformedForwarded> {
    let mut client = peer;
    for hop in hops.rev() {
        let ip = parse(hop).ok_or(MalformedForwarded)?.to_canonical();
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    Ok(client)
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_xff_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The `for=` value of `Forwarded` (RFC 7239): a token or a quoted string; IPv6 in brackets.
fn parse_forwarded_for(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(s);
    if let Some(inner) = s.strip_prefix('[') {
        let (addr, _) = inner.split_once(']')?;
        return addr.parse().ok();
    }
    parse_xff_entry(s)
}

/// Whether `ip` may use a route with this allowlist (`None` allows anyone).
pub(crate) fn allowed(allow: Option<&[IpNet]>, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    allow.is_none_or(|nets| nets.iter().any(|n| n.contains(&ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().expect("test network")).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("test header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[
            ("x-forwarded-for", "10.9.9.9"),
            ("forwarded", "for=10.9.9.9"),
        ]);
        assert_eq!(
            resolve(ip("203.0.113.5"), &h, &nets(&["10.0.0.0/8"])),
            Ok(ip("203.0.113.5"))
        );
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &h, &trusted),
            Ok(ip("198.51.100.7"))
        );
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7:5000"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &h, &trusted),
            Ok(ip("198.51.100.7"))
        );
        // All trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), Ok(ip("10.1.1.1")));
    }

    #[test]
    fn forwarded_header() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[(
            "forwarded",
            "for=1.1.1.1;proto=https, for=\"[2001:db8::7]:4711\";by=10.0.0.1",
        )]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), Ok(ip("2001:db8::7")));
    }

    #[test]
    fn malformed_from_trusted_proxy() {
        let trusted = nets(&["10.0.0.0/8"]);
        for bad in ["nonsense", "1.1.1.1, ", "999.1.1.1", "010.1.1.1"] {
            let h = headers(&[("x-forwarded-for", bad)]);
            assert_eq!(
                resolve(ip("10.0.0.1"), &h, &trusted),
                Err(MalformedForwarded),
                "{bad}"
            );
        }
        let h = headers(&[("forwarded", "proto=https")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &h, &trusted),
            Err(MalformedForwarded)
        );
        // A malformed entry left of the client is never read.
        let h = headers(&[("x-forwarded-for", "garbage, 198.51.100.7")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &h, &trusted),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn v4_mapped_v6() {
        let allow = nets(&["192.0.2.0/24"]);
        assert!(allowed(Some(&allow), ip("::ffff:192.0.2.9")));
        assert!(!allowed(Some(&allow), ip("::ffff:198.51.100.1")));
        let trusted = nets(&["127.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "::ffff:192.0.2.9")]);
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &h, &trusted),
            Ok(ip("192.0.2.9"))
        );
    }

    #[test]
    fn no_allowlist_allows_anyone() {
        assert!(allowed(None, ip("203.0.113.1")));
        assert!(!allowed(Some(&nets(&["10.0.0.0/8"])), ip("203.0.113.1")));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(xff in "\\PC{0,64}", fwd in "\\PC{0,64}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = xff.parse() { h.insert("x-forwarded-for", v); }
            if let Ok(v) = fwd.parse() { h.insert("forwarded", v); }
            let _ = resolve(ip("10.0.0.1"), &h, &nets(&["10.0.0.0/8"]));
        }

        #[test]
        fn untrusted_peer_is_always_the_client(a in proptest::prelude::any::<[u8; 4]>(), xff in "[0-9., ]{0,40}") {
            let peer = IpAddr::from(a);
            let mut h = HeaderMap::new();
            if let Ok(v) = xff.parse() { h.insert("x-forwarded-for", v); }
            let trusted = nets(&["10.0.0.0/8"]);
            if !trusted[0].contains(&peer) {
                proptest::prop_assert_eq!(resolve(peer, &h, &trusted), Ok(peer));
            }
        }
    }
}
