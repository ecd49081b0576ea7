//! Retry policy and circuit breaker.
//!
//! Retryable: connection errors, timeouts, 408, 429 and 5xx. Every other status that is not
//! 2xx (other 4xx, 410, a 3xx: redirects are never followed) dead-letters at once, since
//! sending the same bytes again cannot change the answer.
//!
//! Backoff is exponential with full jitter: before retry k (k = 1 after the first attempt) the
//! delay is uniform in [0, min(max_delay, initial × 5^(k−1))]. With the defaults (5 s, 10 h)
//! the ceilings are 5 s, 25 s, 2 m, 10 m, 52 m, 4.3 h, 10 h: 8 attempts spread over up to about
//! 16 hours, inside the 24 h `max_age`, close to Svix's schedule. A `Retry-After` from a 429 or
//! 503 replaces the jittered delay, capped at `max_delay`.

use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};

use crate::{
    config::Retry,
    queue::{DeliveryState, Pending},
};

/// Growth of the backoff ceiling per retry.
const FACTOR: u32 = 5;

/// Consecutive failed attempts that open a target's breaker.
const BREAKER_THRESHOLD: u32 = 5;
/// First open period; doubled after each failed probe up to [`BREAKER_MAX_OPEN`].
const BREAKER_OPEN: i64 = 2_000;
const BREAKER_MAX_OPEN: i64 = 60_000;

/// What one attempt's outcome means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Delivered,
    /// Try again; the target's `Retry-After`, if any.
    Retry(Option<Duration>),
    /// Do not try again.
    Dead,
}

/// Classifies a target's answer.
pub(crate) fn classify(status: StatusCode, retry_after: Option<Duration>) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry(retry_after),
        _ => Verdict::Dead,
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(s).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The ceiling of the delay before retry `k` (k ≥ 1).
pub(crate) fn ceiling(policy: &Retry, k: u32) -> Duration {
    let mut d = policy.initial;
    for _ in 1..k {
        d = d.saturating_mul(FACTOR);
        if d >= policy.max_delay {
            return policy.max_delay;
        }
    }
    d.min(policy.max_delay)
}

/// The state after attempt `round_n` of this round ended with `verdict` at `at_ms`: the
/// delivery's state, the next attempt time (pending) and, when it gives up, why.
pub(crate) fn next_state(
    policy: &Retry,
    p: &Pending,
    round_n: u32,
    at_ms: i64,
    verdict: &Verdict,
) -> (DeliveryState, i64, Option<&'static str>) {
    match verdict {
        Verdict::Delivered => (DeliveryState::Delivered, at_ms, None),
        Verdict::Dead => (DeliveryState::Dead, at_ms, Some("not retryable")),
        Verdict::Retry(retry_after) => {
            if round_n >= policy.max_attempts {
                return (DeliveryState::Dead, at_ms, Some("attempts exhausted"));
            }
            let delay = match retry_after {
                Some(d) => (*d).min(policy.max_delay),
                None => jitter(ceiling(policy, round_n)),
            };
            let next = at_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            let deadline = p
                .round_started_ms
                .saturating_add(i64::try_from(policy.max_age.as_millis()).unwrap_or(i64::MAX));
            if next > deadline {
                return (DeliveryState::Dead, at_ms, Some("max_age reached"));
            }
            (DeliveryState::Pending, next, None)
        }
    }
}

fn jitter(ceiling: Duration) -> Duration {
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ms))
}

/// A target's circuit breaker: closed, open for a while after consecutive failures, then
/// half-open with one probe at a time until one succeeds.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    failures: u32,
    open_until: Option<i64>,
    open_for: i64,
    /// When it last opened (or reopened after a failed probe), unix ms.
    opened_at: i64,
}

/// Whether an attempt may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Open,
    /// Not before this time (unix ms).
    ClosedUntil(i64),
    /// Half-open and its probe is still out.
    Busy,
}

impl Breaker {
    pub(crate) fn gate(&self, now: i64, in_flight: usize) -> Gate {
        match self.open_until {
            None => Gate::Open,
            Some(t) if now < t => Gate::ClosedUntil(t),
            Some(_) if in_flight > 0 => Gate::Busy,
            Some(_) => Gate::Open,
        }
    }

    /// For the metric: 0 closed, 1 half-open (probing), 2 open.
    pub(crate) fn state(&self, now: i64) -> i64 {
        match self.open_until {
            None => 0,
            Some(t) if now < t => 2,
            Some(_) => 1,
        }
    }

    /// Whether the breaker holds deliveries back (open or half-open).
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// Takes the result of an attempt that started at `started`. A failure of an attempt that
    /// was already in flight when the breaker (re)opened is not a failed probe: it changes
    /// nothing (otherwise every attempt in flight at the opening would double the open time).
    pub(crate) fn record(&mut self, now: i64, healthy: bool, started: i64) {
        if healthy {
            *self = Breaker::default();
            return;
        }
        if self.open_until.is_some() && started < self.opened_at {
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if self.open_until.is_some() {
            // A failed probe: stay open, longer.
            self.open_for = (self.open_for * 2).clamp(BREAKER_OPEN, BREAKER_MAX_OPEN);
            self.open_until = Some(now + self.open_for);
            self.opened_at = now;
        } else if self.failures >= BREAKER_THRESHOLD {
            self.open_for = BREAKER_OPEN;
            self.open_until = Some(now + self.open_for);
            self.opened_at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Retry {
        Retry::default()
    }

    fn pending(started: i64) -> Pending {
        Pending {
            event_id: "e".into(),
            target: "t".into(),
            attempts: 0,
            round_attempts: 0,
            round_started_ms: started,
            next_ms: started,
        }
    }

    #[test]
    fn statuses_are_classified() {
        for s in [200u16, 201, 202, 204, 299] {
            assert_eq!(
                classify(StatusCode::from_u16(s).expect("status"), None),
                Verdict::Delivered
            );
        }
        for s in [408u16, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(
                    classify(StatusCode::from_u16(s).expect("status"), None),
                    Verdict::Retry(_)
                ),
                "{s}"
            );
        }
        for s in [301u16, 302, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(
                classify(StatusCode::from_u16(s).expect("status"), None),
                Verdict::Dead,
                "{s}"
            );
        }
    }

    #[test]
    fn default_ceilings_grow_by_five_up_to_max_delay() {
        let p = policy();
        let secs: Vec<u64> = (1..=8).map(|k| ceiling(&p, k).as_secs()).collect();
        assert_eq!(secs, [5, 25, 125, 625, 3125, 15625, 36000, 36000]);
        let total: u64 = secs[..7].iter().sum();
        // Seven retries after the first attempt: the worst case stays inside max_age.
        assert!(total < p.max_age.as_secs(), "{total}");
    }

    #[test]
    fn jittered_delays_stay_under_their_ceiling() {
        let p = policy();
        for k in 1..8 {
            for _ in 0..200 {
                let (state, next, _) = next_state(&p, &pending(0), k, 1_000, &Verdict::Retry(None));
                assert_eq!(state, DeliveryState::Pending);
                let delay = u128::try_from(next - 1_000).expect("not negative");
                assert!(delay <= ceiling(&p, k).as_millis(), "k={k} delay={delay}");
            }
        }
    }

    #[test]
    fn gives_up_after_max_attempts_and_max_age() {
        let p = Retry {
            max_attempts: 3,
            ..policy()
        };
        let (s, _, why) = next_state(&p, &pending(0), 3, 10, &Verdict::Retry(None));
        assert_eq!((s, why), (DeliveryState::Dead, Some("attempts exhausted")));
        let p = Retry {
            max_age: Duration::from_secs(10),
            ..policy()
        };
        let ra = Verdict::Retry(Some(Duration::from_secs(60)));
        let (s, _, why) = next_state(&p, &pending(0), 1, 1_000, &ra);
        assert_eq!((s, why), (DeliveryState::Dead, Some("max_age reached")));
        let (s, _, why) = next_state(&p, &pending(0), 1, 1_000, &Verdict::Dead);
        assert_eq!((s, why), (DeliveryState::Dead, Some("not retryable")));
    }

    #[test]
    fn retry_after_replaces_backoff_within_max_delay() {
        let p = Retry {
            max_delay: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
            ..policy()
        };
        let (_, next, _) = next_state(
            &p,
            &pending(0),
            1,
            0,
            &Verdict::Retry(Some(Duration::from_secs(7))),
        );
        assert_eq!(next, 7_000);
        let (_, next, _) = next_state(
            &p,
            &pending(0),
            1,
            0,
            &Verdict::Retry(Some(Duration::from_secs(500))),
        );
        assert_eq!(next, 30_000);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("12")),
            Some(Duration::from_secs(12))
        );
        let past = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d =
            parse_retry_after(&HeaderValue::from_str(&future).expect("header")).expect("parses");
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_probes_one_at_a_time() {
        let mut b = Breaker::default();
        for _ in 0..BREAKER_THRESHOLD - 1 {
            b.record(0, false, 0);
            assert_eq!(b.gate(0, 0), Gate::Open);
        }
        b.record(0, false, 0);
        assert_eq!(b.gate(1, 0), Gate::ClosedUntil(BREAKER_OPEN));
        // Half-open: one probe only.
        assert_eq!(b.gate(BREAKER_OPEN, 0), Gate::Open);
        assert_eq!(b.gate(BREAKER_OPEN, 1), Gate::Busy);
        // The probe fails: open again, twice as long.
        b.record(BREAKER_OPEN, false, BREAKER_OPEN);
        assert_eq!(b.gate(BREAKER_OPEN, 0), Gate::ClosedUntil(3 * BREAKER_OPEN));
        // A success closes it.
        b.record(3 * BREAKER_OPEN, true, 3 * BREAKER_OPEN);
        assert_eq!(b.gate(3 * BREAKER_OPEN, 5), Gate::Open);
        assert!(!b.is_open());
    }

    #[test]
    fn failures_in_flight_when_it_opens_are_not_failed_probes() {
        let mut b = Breaker::default();
        // 32 attempts start at 0; they fail one after another from 10 ms on.
        for i in 0..32 {
            b.record(10 + i, false, 0);
        }
        // Opened by the fifth failure, at 14; the 27 after it were in flight already.
        assert_eq!(b.gate(15, 0), Gate::ClosedUntil(14 + BREAKER_OPEN));
        // A probe started after the opening that fails doubles the open time, once.
        let probe = 14 + BREAKER_OPEN;
        b.record(probe + 5, false, probe);
        assert_eq!(
            b.gate(probe + 6, 0),
            Gate::ClosedUntil(probe + 5 + 2 * BREAKER_OPEN)
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut b = Breaker::default();
        for _ in 0..10 {
            for _ in 0..BREAKER_THRESHOLD - 1 {
                b.record(0, false, 0);
            }
            b.record(0, true, 0);
        }
        assert_eq!(b.gate(0, 0), Gate::Open);
    }
}
