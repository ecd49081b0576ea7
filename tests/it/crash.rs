//! Crash safety: the router is killed with SIGKILL at random moments while thousands of events
//! arrive concurrently, and restarted each time. Every event that got a 202 must reach every
//! target it matches at least once; a repeat carries the same `Hookrouter-Event-Id` and body,
//! and one event never gets two ids.
//!
//! Two plans: a few long rounds (deep backlogs and many retries in flight at each kill), and
//! fifty short ones (kills soon after a restart, while the journal was just applied again and
//! resumed deliveries are starting).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::support::{Reply, Router, Target, client, eventually};

/// How one test loads and kills the router.
struct Plan {
    /// Rounds of load, each ended by a SIGKILL and followed by a restart.
    rounds: usize,
    /// Concurrent senders.
    senders: usize,
    /// Load before the kill: `min_ms` plus 0 to `spread_ms`, varying by round.
    min_ms: u64,
    spread_ms: u64,
    /// Fewest acknowledged events for the run to count.
    min_acked: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_across_repeated_sigkill() {
    run(Plan {
        rounds: 6,
        senders: 32,
        min_ms: 1200,
        spread_ms: 800,
        min_acked: 1000,
    })
    .await;
}

/// Fifty kills, 60–460 ms of load each: many more crash points, among them kills while the
/// previous crash's backlog is still being delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_across_fifty_short_sigkill_rounds() {
    run(Plan {
        rounds: 50,
        senders: 16,
        min_ms: 60,
        spread_ms: 400,
        min_acked: 1000,
    })
    .await;
}

async fn run(plan: Plan) {
    let all = Target::start(Reply::default()).await;
    let even = Target::start(Reply::default()).await;
    let flaky = Target::start(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let yaml = format!(
        r#"listen:
  - addr: "127.0.0.1:{{port}}"
admin: {{ addr: "127.0.0.1:{{admin}}" }}
queue: {{ embedded: {{ path: "{{dir}}/data" }} }}
targets:
  all: {{ url: "{}" }}
  even: {{ url: "{}" }}
  flaky: {{ url: "{}", retry: {{ max_attempts: 1000, initial: 20ms, max_delay: 200ms, max_age: 1h }} }}
routes:
  - name: r
    path: /in
    event: {{ type: "body:/type", id: "body:/id" }}
    deliver:
      - {{ target: all }}
      - {{ target: even, events: ["even.*"] }}
      - {{ target: flaky }}
"#,
        all.url("/"),
        even.url("/"),
        flaky.url("/")
    );
    let started = std::time::Instant::now();
    let mut router = Router::start(&yaml);
    // Acknowledged events: router id → whether it matches `even`.
    let acked: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
    let mut next = 0u64;
    for round in 0..plan.rounds {
        let url = router.url("/in");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut senders = Vec::new();
        for s in 0..plan.senders {
            let url = url.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            let base = next + (s as u64) * 1_000_000;
            senders.push(tokio::spawn(async move {
                let c = client();
                let mut i = base;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let is_even = i.is_multiple_of(2);
                    let kind = if is_even {
                        "even.created"
                    } else {
                        "odd.created"
                    };
                    let body = format!(r#"{{"id":"evt_{round}_{i}","type":"{kind}"}}"#);
                    let req = tokio::time::timeout(
                        Duration::from_secs(5),
                        try_send(&c, &url, body.into_bytes()),
                    )
                    .await;
                    match req {
                        Ok(Some((202, id))) => {
                            acked.lock().expect("test setup").insert(id, is_even);
                        }
                        Ok(Some((200, _))) => panic!("no event is sent twice here"),
                        // 503 while the store is busy, or the connection died with the router.
                        _ => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }));
        }
        next += 100_000_000;
        // Let the flaky target succeed now and then, so retries are in flight at the kill.
        flaky.set_reply(Reply {
            status: if round % 2 == 0 { 503 } else { 200 },
            ..Reply::default()
        });
        let run_for = plan.min_ms + varying_ms(round, plan.spread_ms);
        tokio::time::sleep(Duration::from_millis(run_for)).await;
        router.kill_hard();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in senders {
            s.await.expect("test setup");
        }
        router.restart();
    }
    let load_secs = started.elapsed().as_secs_f64();
    flaky.set_reply(Reply::default());
    let acked = acked.lock().expect("test setup").clone();
    assert!(
        acked.len() >= plan.min_acked,
        "too few events acknowledged: {} (want {})",
        acked.len(),
        plan.min_acked
    );

    let ids = |t: &Target| -> HashSet<String> {
        t.all()
            .iter()
            .filter_map(|s| s.headers.get("hookrouter-event-id"))
            .map(|v| v.to_str().expect("test setup").to_string())
            .collect()
    };
    let complete = || {
        let (a, e, f) = (ids(&all), ids(&even), ids(&flaky));
        acked
            .iter()
            .all(|(id, is_even)| a.contains(id) && f.contains(id) && (!is_even || e.contains(id)))
    };
    let done = eventually(Duration::from_secs(90), complete).await;
    let (a, e, f) = (ids(&all), ids(&even), ids(&flaky));
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, is_even)| {
            !a.contains(*id) || !f.contains(*id) || (**is_even && !e.contains(*id))
        })
        .take(5)
        .collect();
    assert!(
        done,
        "{} acknowledged, missing e.g. {missing:?}",
        acked.len()
    );
    // `even` never got an odd event.
    for s in even.all() {
        let body = String::from_utf8_lossy(&s.body).to_string();
        assert!(body.contains("even.created"), "{body}");
    }
    // A repeat of one event always carries that event's id and its body; and since every
    // body was sent once, one body never arrives under two ids (an event stored twice).
    let mut body_of: HashMap<String, bytes::Bytes> = HashMap::new();
    let mut id_of: HashMap<bytes::Bytes, String> = HashMap::new();
    for s in all.all().into_iter().chain(even.all()).chain(flaky.all()) {
        let id = s.headers["hookrouter-event-id"]
            .to_str()
            .expect("test setup")
            .to_string();
        if let Some(prev) = body_of.insert(id.clone(), s.body.clone()) {
            assert_eq!(prev, s.body, "event {id} delivered with another body");
        }
        if let Some(prev) = id_of.insert(s.body.clone(), id.clone()) {
            assert_eq!(
                prev,
                id,
                "one event delivered under two ids: {}",
                String::from_utf8_lossy(&s.body)
            );
        }
    }
    let repeats = all.count() - a.len();
    eprintln!(
        "crash test: {} acknowledged over {} kills ({load_secs:.1} s of load and restarts, \
         {:.1} s in all); all got {} requests for {} ids ({repeats} repeats)",
        acked.len(),
        plan.rounds,
        started.elapsed().as_secs_f64(),
        all.count(),
        a.len()
    );
}

/// 0 to `spread` ms, varying by round without a random source shared with other tests.
fn varying_ms(round: usize, spread: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) + round as u64 * 7919) % spread.max(1)
}

/// Status and router event id, or `None` when the connection failed.
async fn try_send(
    c: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    url: &str,
    body: Vec<u8>,
) -> Option<(u16, String)> {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .ok()?;
    let resp = c.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("hookrouter-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // The status line is the acknowledgement: count it even if the body is cut off.
    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    Some((status, id))
}
