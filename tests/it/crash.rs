//! Crash safety: the router is killed with SIGKILL at random moments while thousands of events
//! arrive concurrently, and restarted each time. Every event that got a 202 must reach every
//! target it matches at least once; a repeat carries the same `Hookrouter-Event-Id`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::support::{Reply, Router, Target, client, eventually};

/// Rounds of load followed by a kill.
const ROUNDS: usize = 6;
/// Concurrent senders.
const SENDERS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_across_repeated_sigkill() {
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
    let mut router = Router::start(&yaml);
    // Acknowledged events: router id → whether it matches `even`.
    let acked: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
    let mut next = 0u64;
    for round in 0..ROUNDS {
        let url = router.url("/in");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut senders = Vec::new();
        for s in 0..SENDERS {
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
        let run_for = 1200 + fastrand_ms(round);
        tokio::time::sleep(Duration::from_millis(run_for)).await;
        router.kill_hard();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in senders {
            s.await.expect("test setup");
        }
        router.restart();
    }
    flaky.set_reply(Reply::default());
    let acked = acked.lock().expect("test setup").clone();
    assert!(
        acked.len() >= 1000,
        "too few events acknowledged: {}",
        acked.len()
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
    // A repeat of one event always carries that event's id and its body.
    let mut body_of: HashMap<String, bytes::Bytes> = HashMap::new();
    for s in all.all().into_iter().chain(flaky.all()) {
        let id = s.headers["hookrouter-event-id"]
            .to_str()
            .expect("test setup")
            .to_string();
        if let Some(prev) = body_of.insert(id.clone(), s.body.clone()) {
            assert_eq!(prev, s.body, "event {id} delivered with another body");
        }
    }
    eprintln!(
        "crash test: {} acknowledged over {ROUNDS} kills; all got {} requests for {} ids",
        acked.len(),
        all.count(),
        a.len()
    );
}

/// 0–800 ms, varying by round without a random source shared with other tests.
fn fastrand_ms(round: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) + round as u64 * 7919) % 800
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
