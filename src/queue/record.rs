//! The stored forms of events.
//!
//! Headers, format 1: for each header, the name's length (u16, little endian), the name, the
//! value's length (u32 LE), the value. Events carry their format number, so a later format can
//! be read beside this one.
//!
//! A whole event in the ingest journal, format 1: the format byte, then each field as a
//! length-prefixed (u32 LE) byte string in a fixed order, optional ones behind a presence byte,
//! integers as i64 LE, the targets as a count (u32 LE) and a string each.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::NewEvent;

/// The format new records are written in.
pub(crate) const FORMAT: i64 = 1;

/// Encodes `headers` in format 1.
pub(crate) fn encode_headers(headers: &HeaderMap) -> Bytes {
    let mut out = BytesMut::with_capacity(headers.len() * 48);
    for (name, value) in headers {
        let n = name.as_str().as_bytes();
        let v = value.as_bytes();
        // Header names are far below 64 KiB and values below 4 GiB (hyper's limits).
        let (Ok(nl), Ok(vl)) = (u16::try_from(n.len()), u32::try_from(v.len())) else {
            continue;
        };
        out.put_u16_le(nl);
        out.put_slice(n);
        out.put_u32_le(vl);
        out.put_slice(v);
    }
    out.freeze()
}

/// Decodes format-1 headers; `None` if the bytes are not a valid record.
pub(crate) fn decode_headers(mut b: &[u8]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    while !b.is_empty() {
        let (nl, rest) = b.split_first_chunk::<2>()?;
        let nl = usize::from(u16::from_le_bytes(*nl));
        let (name, rest) = rest.split_at_checked(nl)?;
        let (vl, rest) = rest.split_first_chunk::<4>()?;
        let vl = usize::try_from(u32::from_le_bytes(*vl)).ok()?;
        let (value, rest) = rest.split_at_checked(vl)?;
        headers.append(
            HeaderName::from_bytes(name).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        );
        b = rest;
    }
    Some(headers)
}

/// Appends `e` in journal format 1 to `out`.
pub(crate) fn encode_event(e: &NewEvent, out: &mut Vec<u8>) {
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        // Every field is far below 4 GiB (bodies are capped by `max_body`).
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&b[..b.len().min(len as usize)]);
    }
    fn opt(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => {
                out.push(1);
                bytes(out, s.as_bytes());
            }
            None => out.push(0),
        }
    }
    out.push(FORMAT as u8);
    bytes(out, e.id.as_bytes());
    bytes(out, e.route.as_bytes());
    opt(out, e.dedup_key.as_deref());
    out.extend_from_slice(&e.dedup_window_ms.to_le_bytes());
    opt(out, e.provider_id.as_deref());
    opt(out, e.kind.as_deref());
    opt(out, e.version.as_deref());
    out.extend_from_slice(&e.received_ms.to_le_bytes());
    opt(out, e.query.as_deref());
    bytes(out, &encode_headers(&e.headers));
    bytes(out, &e.body);
    let n = u32::try_from(e.targets.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
    for t in &e.targets {
        bytes(out, t.as_bytes());
    }
}

/// Decodes a journal record; `None` if it is not a valid format-1 event.
pub(crate) fn decode_event(b: &[u8]) -> Option<NewEvent> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, rest) = self.0.split_at_checked(n)?;
            self.0 = rest;
            Some(head)
        }
        fn u8(&mut self) -> Option<u8> {
            Some(self.take(1)?[0])
        }
        fn u32(&mut self) -> Option<u32> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
        }
        fn i64(&mut self) -> Option<i64> {
            Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        fn bytes(&mut self) -> Option<&'a [u8]> {
            let n = usize::try_from(self.u32()?).ok()?;
            self.take(n)
        }
        fn string(&mut self) -> Option<String> {
            String::from_utf8(self.bytes()?.to_vec()).ok()
        }
        fn opt(&mut self) -> Option<Option<String>> {
            match self.u8()? {
                0 => Some(None),
                1 => Some(Some(self.string()?)),
                _ => None,
            }
        }
    }
    let mut r = Reader(b);
    if i64::from(r.u8()?) != FORMAT {
        return None;
    }
    let id = r.string()?;
    let route = r.string()?;
    let dedup_key = r.opt()?;
    let dedup_window_ms = r.i64()?;
    let provider_id = r.opt()?;
    let kind = r.opt()?;
    let version = r.opt()?;
    let received_ms = r.i64()?;
    let query = r.opt()?;
    let headers = decode_headers(r.bytes()?)?;
    let body = Bytes::copy_from_slice(r.bytes()?);
    let n = r.u32()?;
    let mut targets = Vec::new();
    for _ in 0..n {
        targets.push(r.string()?);
    }
    r.0.is_empty().then_some(NewEvent {
        id,
        route,
        dedup_key,
        dedup_window_ms,
        provider_id,
        kind,
        version,
        received_ms,
        query,
        headers,
        body,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> NewEvent {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        NewEvent {
            id: "0190-abc".into(),
            route: "stripe".into(),
            dedup_key: Some("id:evt_1".into()),
            dedup_window_ms: 86_400_000,
            provider_id: Some("evt_1".into()),
            kind: Some("invoice.paid".into()),
            version: None,
            received_ms: 1_764_000_000_123,
            query: Some("a=b".into()),
            headers,
            body: Bytes::from_static(b"{\"id\":\"evt_1\"}"),
            targets: vec!["billing".into(), "audit".into()],
        }
    }

    #[test]
    fn events_round_trip() {
        let e = sample();
        let mut out = Vec::new();
        encode_event(&e, &mut out);
        let back = decode_event(&out).expect("decodes");
        assert_eq!(back.id, e.id);
        assert_eq!(back.route, e.route);
        assert_eq!(back.dedup_key, e.dedup_key);
        assert_eq!(back.dedup_window_ms, e.dedup_window_ms);
        assert_eq!(back.provider_id, e.provider_id);
        assert_eq!(back.kind, e.kind);
        assert_eq!(back.version, e.version);
        assert_eq!(back.received_ms, e.received_ms);
        assert_eq!(back.query, e.query);
        assert_eq!(back.headers, e.headers);
        assert_eq!(back.body, e.body);
        assert_eq!(back.targets, e.targets);
    }

    #[test]
    fn truncated_or_extended_events_are_refused() {
        let mut out = Vec::new();
        encode_event(&sample(), &mut out);
        for cut in 0..out.len() {
            assert!(decode_event(&out[..cut]).is_none(), "cut at {cut}");
        }
        out.push(0);
        assert!(decode_event(&out).is_none(), "trailing byte");
    }

    #[test]
    fn headers_round_trip_with_repeats_and_order() {
        let mut h = HeaderMap::new();
        h.append("content-type", HeaderValue::from_static("application/json"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("stripe-signature", HeaderValue::from_static("t=1,v1=ab"));
        let back = decode_headers(&encode_headers(&h)).expect("decodes");
        assert_eq!(back, h);
        let xa: Vec<_> = back.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
    }

    #[test]
    fn truncated_records_are_refused() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("value"));
        let b = encode_headers(&h);
        for cut in 1..b.len() {
            assert!(decode_headers(&b[..cut]).is_none(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_headers(&b);
            let _ = decode_event(&b);
        }
    }
}
