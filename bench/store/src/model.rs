//! What the router hands the store: one accepted webhook, and one delivery
//! outcome. Plus the byte encoding the key/value stores (and the log) use for
//! an event record.

use std::time::{SystemTime, UNIX_EPOCH};

/// The targets every event is fanned out to (three delivery rows per event).
pub const TARGETS: [&str; 3] = ["billing-svc", "crm-sync", "audit-log"];

const ROUTES: [&str; 8] = [
    "stripe-prod",
    "stripe-test",
    "github-ci",
    "slack-events",
    "shopify-orders",
    "twilio-sms",
    "zoom-meetings",
    "square-pay",
];

const TYPES: [&str; 4] = [
    "invoice.paid",
    "customer.updated",
    "push",
    "message.created",
];

/// Body size of every event.
pub const BODY_LEN: usize = 2048;

pub struct Event {
    pub id: String,
    pub route: &'static str,
    pub typ: &'static str,
    pub received_at: i64,
    pub headers: Vec<u8>,
    pub body: Vec<u8>,
    pub dedup_key: String,
}

/// What the writer answers for one event.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// Stored under this sequence number.
    Stored(u64),
    /// The (route, dedup key) pair was seen before: nothing stored.
    Duplicate,
}

/// One delivery attempt's outcome for (event, target): update the delivery
/// row (state, attempts + 1, next_at) and add an attempt row.
#[derive(Clone, Copy)]
pub struct Update {
    pub seq: u64,
    pub target: usize,
    pub state: u8,
    pub at: i64,
    pub next_at: i64,
    pub status: u16,
}

/// Delivery states.
pub const PENDING: u8 = 0;
pub const DELIVERED: u8 = 2;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hex(rng: &mut fastrand::Rng, n: usize) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    (0..n).map(|_| H[rng.usize(..16)] as char).collect()
}

/// Generates events as a webhook provider would send them: a random 2 KiB
/// body (incompressible, so LZ4 in fjall gains nothing), ~300 bytes of
/// headers, a unique id and a dedup key.
pub struct Gen {
    rng: fastrand::Rng,
    last_key: Option<(&'static str, String)>,
    /// Per mille of events that repeat the previous dedup key (and are
    /// answered "duplicate").
    dup_per_mille: u32,
}

impl Gen {
    pub fn new(seed: u64, dup_per_mille: u32) -> Self {
        Gen {
            rng: fastrand::Rng::with_seed(seed),
            last_key: None,
            dup_per_mille,
        }
    }

    pub fn event(&mut self) -> Event {
        let rng = &mut self.rng;
        let mut body = vec![0u8; BODY_LEN];
        rng.fill(&mut body);
        let (route, dedup_key) = match &self.last_key {
            Some((r, k)) if rng.u32(..1000) < self.dup_per_mille => (*r, k.clone()),
            _ => (ROUTES[rng.usize(..ROUTES.len())], format!("evt_{}", hex(rng, 24))),
        };
        let headers = format!(
            "content-type: application/json\r\nuser-agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n\
             stripe-signature: t={},v1={}\r\nx-request-id: {}\r\ncontent-length: {}\r\n",
            now_ms() / 1000,
            hex(rng, 64),
            hex(rng, 32),
            BODY_LEN
        )
        .into_bytes();
        self.last_key = Some((route, dedup_key.clone()));
        Event {
            id: hex(rng, 32),
            route,
            typ: TYPES[rng.usize(..TYPES.len())],
            received_at: now_ms(),
            headers,
            body,
            dedup_key,
        }
    }
}

/// Event record as stored by the key/value stores and the log:
/// u16 len + id, u16 len + route, u16 len + type, i64 received_at,
/// u32 len + headers, then the body to the end.
pub fn encode_event(e: &Event, out: &mut Vec<u8>) {
    for s in [e.id.as_bytes(), e.route.as_bytes(), e.typ.as_bytes()] {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }
    out.extend_from_slice(&e.received_at.to_be_bytes());
    out.extend_from_slice(&(e.headers.len() as u32).to_be_bytes());
    out.extend_from_slice(&e.headers);
    out.extend_from_slice(&e.body);
}

/// The id of an encoded event record (what a purge needs to drop the id
/// index entry).
pub fn decode_event_id(rec: &[u8]) -> Option<&[u8]> {
    let n = u16::from_be_bytes([*rec.first()?, *rec.get(1)?]) as usize;
    rec.get(2..2 + n)
}
