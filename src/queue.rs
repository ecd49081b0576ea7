//! The durable queue behind async mode: what ingest appends and the delivery engine works
//! from. One interface, so the engine does not know which backend stores the events.
//!
//! Guarantees every backend gives:
//! - `append` returns only once the event and its deliveries are durable (group commit: many
//!   concurrent appends share one sync), or fails with nothing of the event stored;
//! - an event id seen on the same route within the route's dedup window is reported as a
//!   duplicate and stores nothing;
//! - delivery state (attempts, next attempt time, delivered / dead) survives restarts, so
//!   pending deliveries resume where they were. State updates are written in order but not
//!   waited for: after a crash an attempt may be repeated (at-least-once), never skipped.

use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

pub(crate) mod embedded;
pub(crate) mod journal;
pub(crate) mod nats;
pub(crate) mod record;

/// Why the queue could not do something.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueueError {
    /// The store refused or failed the write (disk full, I/O error, over `max_size`).
    #[error("the store cannot take writes: {0}")]
    Unavailable(String),
    /// The store has stopped (shutdown).
    #[error("the store is closed")]
    Closed,
}

/// An event to store, with the deliveries it needs.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    /// The router's id for the event (sent as `Hookrouter-Event-Id`).
    pub(crate) id: String,
    pub(crate) route: String,
    /// What identifies the event for deduplication: the provider's id, else a body hash;
    /// `None` when the route does not deduplicate.
    pub(crate) dedup_key: Option<String>,
    /// How long `dedup_key` is remembered, in milliseconds.
    pub(crate) dedup_window_ms: i64,
    pub(crate) provider_id: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) version: Option<String>,
    /// Unix milliseconds.
    pub(crate) received_ms: i64,
    /// The inbound query string, passed on to targets.
    pub(crate) query: Option<String>,
    /// The headers passed on to targets (hop-by-hop and `Host` already removed).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// One delivery per target name.
    pub(crate) targets: Vec<String>,
}

/// What `append` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Stored durably; deliveries are pending.
    Stored,
    /// The same route accepted this event id within the window: nothing stored.
    Duplicate {
        /// The router's id of the event accepted first.
        id: String,
    },
}

/// A stored event, as deliveries need it.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub(crate) id: String,
    pub(crate) route: String,
    pub(crate) kind: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) received_ms: i64,
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl StoredEvent {
    /// The stored form of a new event.
    pub(crate) fn from_new(e: &NewEvent) -> Self {
        StoredEvent {
            id: e.id.clone(),
            route: e.route.clone(),
            kind: e.kind.clone(),
            version: e.version.clone(),
            received_ms: e.received_ms,
            query: e.query.clone(),
            headers: e.headers.clone(),
            body: e.body.clone(),
        }
    }
}

/// A delivery waiting for its next attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) event_id: String,
    pub(crate) target: String,
    /// Attempts made so far, over all rounds (the next one is `attempts + 1`).
    pub(crate) attempts: u32,
    /// Attempts made in this round (a replay starts a new round with a fresh budget).
    pub(crate) round_attempts: u32,
    /// When this round started (arrival or replay), unix ms; `max_age` counts from here.
    pub(crate) round_started_ms: i64,
    /// When the next attempt is due, unix ms.
    pub(crate) next_ms: i64,
}

/// The state a delivery is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub(crate) fn code(self) -> i64 {
        match self {
            DeliveryState::Pending => 0,
            DeliveryState::Delivered => 1,
            DeliveryState::Dead => 2,
        }
    }

    pub(crate) fn from_code(c: i64) -> DeliveryState {
        match c {
            1 => DeliveryState::Delivered,
            2 => DeliveryState::Dead,
            _ => DeliveryState::Pending,
        }
    }
}

/// One finished attempt and the state it leaves the delivery in.
#[derive(Debug, Clone)]
pub(crate) struct AttemptRecord {
    pub(crate) event_id: String,
    pub(crate) target: String,
    /// The attempt's number (1 = first).
    pub(crate) n: u32,
    /// The attempt number within the round.
    pub(crate) round_n: u32,
    /// When it started, unix ms.
    pub(crate) at_ms: i64,
    /// The target's status code, when it answered.
    pub(crate) status: Option<u16>,
    pub(crate) latency_ms: u32,
    /// Why it failed, in a few words (no bodies, no secrets).
    pub(crate) error: Option<String>,
    /// The state after it.
    pub(crate) state: DeliveryState,
    /// When the next attempt is due (pending only), unix ms.
    pub(crate) next_ms: i64,
}

/// Which deliveries to replay.
#[derive(Debug, Clone)]
pub(crate) enum ReplaySelection {
    /// One event's deliveries (all, or one target's), whatever their state.
    Event { id: String, target: Option<String> },
    /// Dead letters: all, or of one event, target and/or route.
    DeadLetters {
        event: Option<String>,
        target: Option<String>,
        route: Option<String>,
    },
}

/// A filter for listings.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    pub(crate) route: Option<String>,
    pub(crate) target: Option<String>,
    /// Only events received before this one (by its id), for paging newest-first.
    pub(crate) before: Option<String>,
    pub(crate) limit: usize,
}

/// A delivery, as listings show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeliveryView {
    pub(crate) target: String,
    pub(crate) state: DeliveryState,
    pub(crate) attempts: u32,
    /// Next attempt time (pending), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
}

/// An attempt, as `events show` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AttemptView {
    pub(crate) target: String,
    pub(crate) attempt: u32,
    /// RFC 3339.
    pub(crate) at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<u16>,
    pub(crate) latency_ms: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// An event, as listings show it (no body, no headers).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventView {
    pub(crate) id: String,
    pub(crate) route: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) provider_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    /// RFC 3339.
    pub(crate) received_at: String,
    pub(crate) body_bytes: usize,
    pub(crate) deliveries: Vec<DeliveryView>,
    /// Only in `show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attempts: Option<Vec<AttemptView>>,
}

/// How much the store holds.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Stats {
    /// Bytes on disk (database and journal).
    pub(crate) disk_bytes: u64,
    /// The configured ceiling.
    pub(crate) max_bytes: u64,
    pub(crate) events: u64,
    pub(crate) pending: u64,
    pub(crate) dead: u64,
    /// The embedded store is rebuilding its database after the disk failed a sync.
    pub(crate) degraded: bool,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Purged {
    pub(crate) events: u64,
    pub(crate) dedup_keys: u64,
}

/// The queue, whichever backend stores it.
pub(crate) enum Queue {
    Embedded(embedded::Embedded),
    /// Shared by several instances: JetStream's consumers hand out the deliveries.
    Nats(std::sync::Arc<nats::Nats>),
}

impl Queue {
    /// Stores `event` durably (or reports it a duplicate).
    pub(crate) async fn append(&self, event: NewEvent) -> Result<Appended, QueueError> {
        match self {
            Queue::Embedded(q) => q.append(event).await,
            Queue::Nats(q) => q.append(event).await,
        }
    }

    /// Records a finished attempt; not waited for (see the module notes).
    pub(crate) fn record(&self, attempt: AttemptRecord) {
        match self {
            Queue::Embedded(q) => q.record(attempt),
            Queue::Nats(q) => q.record(attempt),
        }
    }

    /// A delivery the engine drops because its event is gone (retention removed it).
    pub(crate) fn forget(&self, p: &Pending) {
        match self {
            // Nothing to do: the store removed the event and its deliveries together.
            Queue::Embedded(_) => {}
            Queue::Nats(q) => q.forget(&p.event_id, &p.target),
        }
    }

    /// Every pending delivery, for resuming on start.
    pub(crate) async fn pending(&self) -> Result<Vec<Pending>, QueueError> {
        match self {
            Queue::Embedded(q) => q.pending().await,
            Queue::Nats(_) => Ok(Vec::new()),
        }
    }

    /// An event's stored request, if it is still kept.
    pub(crate) async fn load(&self, id: &str) -> Result<Option<StoredEvent>, QueueError> {
        match self {
            Queue::Embedded(q) => q.load(id).await,
            Queue::Nats(q) => q.load(id).await,
        }
    }

    /// Resets the selected deliveries to pending, due now, with a fresh retry budget.
    pub(crate) async fn replay(&self, sel: ReplaySelection) -> Result<Vec<Pending>, QueueError> {
        match self {
            Queue::Embedded(q) => q.replay(sel).await,
            Queue::Nats(q) => q.replay(sel).await,
        }
    }

    /// Events, newest first.
    pub(crate) async fn events(&self, filter: ListFilter) -> Result<Vec<EventView>, QueueError> {
        match self {
            Queue::Embedded(q) => q.events(filter).await,
            Queue::Nats(q) => q.events(filter).await,
        }
    }

    /// One event with every attempt.
    pub(crate) async fn event(&self, id: &str) -> Result<Option<EventView>, QueueError> {
        match self {
            Queue::Embedded(q) => q.event(id).await,
            Queue::Nats(q) => q.event(id).await,
        }
    }

    /// Events with at least one dead delivery (matching the filter's target), newest first.
    pub(crate) async fn dead_letters(
        &self,
        filter: ListFilter,
    ) -> Result<Vec<EventView>, QueueError> {
        match self {
            Queue::Embedded(q) => q.dead_letters(filter).await,
            Queue::Nats(q) => q.dead_letters(filter).await,
        }
    }

    /// Removes what retention no longer keeps.
    pub(crate) async fn purge(&self, config: &crate::config::Queue) -> Result<Purged, QueueError> {
        match (self, config) {
            (Queue::Embedded(q), crate::config::Queue::Embedded(settings)) => {
                q.purge(embedded::Retention::of(settings)).await
            }
            // The running backend is fixed at start; a reload that names another one
            // takes effect only on restart, and until then the start's settings hold.
            (Queue::Embedded(q), _) => q.purge(q.retention()).await,
            // JetStream applies the streams' own limits.
            (Queue::Nats(_), _) => Ok(Purged::default()),
        }
    }

    /// What the metrics need: bytes on disk and dead letters per target.
    pub(crate) async fn gauges(&self) -> Result<(u64, Vec<(String, u64)>), QueueError> {
        match self {
            Queue::Embedded(q) => q.gauges().await,
            Queue::Nats(q) => q.gauges().await,
        }
    }

    /// Whether the embedded store's database is being rebuilt after a lost write.
    pub(crate) fn degraded(&self) -> bool {
        match self {
            Queue::Embedded(q) => q.degraded(),
            Queue::Nats(_) => false,
        }
    }

    /// The NATS queue, when that is the backend: its consumers hand out deliveries, so the
    /// engine pulls rather than schedules.
    pub(crate) fn shared(&self) -> Option<&std::sync::Arc<nats::Nats>> {
        match self {
            Queue::Embedded(_) => None,
            Queue::Nats(q) => Some(q),
        }
    }

    /// Sizes and counts.
    pub(crate) async fn stats(&self) -> Result<Stats, QueueError> {
        match self {
            Queue::Embedded(q) => q.stats().await,
            Queue::Nats(q) => q.stats().await,
        }
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub(crate) fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_564_800_000), "2026-11-25T00:00:00.000Z");
    }
}
