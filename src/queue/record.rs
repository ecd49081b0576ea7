//! The stored form of an event's headers. Format 1: for each header, the name's length (u16,
//! little endian), the name, the value's length (u32 LE), the value. Events carry their format
//! number, so a later format can be read beside this one.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        }
    }
}
