//! Shared by `loadgen` and `sink`: the benchmark body with a fresh event id per request, and the
//! two signature schemes the benchmark uses (Stripe's for hookrouter, GitHub-style
//! `X-Hub-Signature-256` for adnanh/webhook's `payload-hmac-sha256` rule).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The event id is `evt_` and 24 characters, like the one in `bench/payload.json`, so every body
/// keeps the payload's exact size (2048 bytes).
pub const ID_PREFIX: &str = "evt_";
pub const ID_LEN: usize = 28;

/// Ids made by `loadgen`: `evt_` + a 3-character run tag starting with `l` + the request's
/// scheduled send time in Unix microseconds (16 digits) + a 5-digit sequence number. The sink
/// reads the time back to measure how long an event took from its scheduled send to delivery.
/// (wrk's ids, from `signed.lua`, use tags starting with `w` and carry no time.)
pub fn loadgen_id(tag: &str, sched_unix_us: u64, seq: u64) -> String {
    assert!(
        tag.len() == 3 && tag.starts_with('l'),
        "loadgen tags are 3 characters starting with l"
    );
    format!(
        "{ID_PREFIX}{tag}{:016}{:05}",
        sched_unix_us % 10_000_000_000_000_000,
        seq % 100_000
    )
}

/// The scheduled send time (Unix µs) carried by a `loadgen` id, if it is one.
pub fn sched_time_of(id: &[u8]) -> Option<u64> {
    if id.len() != ID_LEN || !id.starts_with(ID_PREFIX.as_bytes()) || id[4] != b'l' {
        return None;
    }
    std::str::from_utf8(&id[7..23]).ok()?.parse().ok()
}

/// The top-level `"id"` of a benchmark body: the first `"id": "…"` (it is the body's first key).
pub fn event_id(body: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"id\": \"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[at..].iter().position(|&b| b == b'"')?;
    Some(&body[at..at + len])
}

/// The payload split around its top-level event id.
pub struct Payload {
    before: Vec<u8>,
    after: Vec<u8>,
}

impl Payload {
    pub fn load(path: &str) -> Result<Self, String> {
        let body = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let id = event_id(&body).ok_or_else(|| format!("{path}: no \"id\": \"…\" found"))?;
        if id.len() != ID_LEN || !id.starts_with(ID_PREFIX.as_bytes()) {
            return Err(format!(
                "{path}: the event id must be {ID_PREFIX} + 24 characters"
            ));
        }
        let at = id.as_ptr() as usize - body.as_ptr() as usize;
        Ok(Self {
            before: body[..at].to_vec(),
            after: body[at + ID_LEN..].to_vec(),
        })
    }

    pub fn len(&self) -> usize {
        self.before.len() + ID_LEN + self.after.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the body with `id` (exactly [`ID_LEN`] bytes) to `out`.
    pub fn write_with_id(&self, id: &str, out: &mut Vec<u8>) {
        assert_eq!(id.len(), ID_LEN);
        out.extend_from_slice(&self.before);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&self.after);
    }
}

type HmacSha256 = Hmac<Sha256>;

/// `Stripe-Signature` value: `t=T,v1=hex(HMAC-SHA256(secret, "T." + body))`.
pub fn stripe_signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// `X-Hub-Signature-256` value: `sha256=hex(HMAC-SHA256(secret, body))`.
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = loadgen_id("l0a", 1_764_000_000_123_456, 42);
        assert_eq!(id.len(), ID_LEN);
        assert_eq!(sched_time_of(id.as_bytes()), Some(1_764_000_000_123_456));
        assert_eq!(sched_time_of(b"evt_w0a000000000000000000001"), None);
    }

    #[test]
    fn finds_the_top_level_id() {
        let body = br#"{"id": "evt_1", "data": {"object": {"id": "pi_2"}}}"#;
        assert_eq!(event_id(body), Some(&b"evt_1"[..]));
    }
}
