//! The NATS JetStream queue (`queue.nats`) with several router instances on one private
//! `nats-server` per test: shared deliveries (exactly once), deduplication across instances
//! and across a NATS restart, an instance killed under load, one stopped gracefully handing its
//! deliveries back, the NATS server restarted or killed under load, dead letters and replay
//! through another instance (API and CLI), and the instances registry with config generations.

use std::{
    collections::{HashMap, HashSet},
    process::{Command, Output},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    nats_server::NatsServer,
    support::{Answer, Reply, Router, Target, client, eventually, free_port, send},
};

const TOKEN: &str = "nats-admin-token";
const WAIT: Duration = Duration::from_secs(15);

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// Config head: a plain listener, the admin listener with a token, the queue on `nats` with
/// `ack_wait`, then `targets` (lines indented by 2).
fn head(nats: &NatsServer, ack_wait: &str, targets: &str) -> String {
    format!(
        r#"listen:
  - addr: "127.0.0.1:{{port}}"
admin: {{ addr: "127.0.0.1:{{admin}}", token: "{TOKEN}" }}
queue:
  nats:
    url: "{url}"
    replicas: 1
    ack_wait: {ack_wait}
targets:
{targets}
"#,
        url = nats.url()
    )
}

/// Route `r` at `/in` (event type and id from the body) delivering to every one of `targets`.
fn route(targets: &[&str]) -> String {
    let deliver: Vec<String> = targets
        .iter()
        .map(|t| format!("{{ target: {t} }}"))
        .collect();
    format!(
        r#"routes:
  - name: r
    path: /in
    event: {{ type: "body:/type", id: "body:/id" }}
    deliver: [ {} ]
"#,
        deliver.join(", ")
    )
}

fn body(provider_id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{provider_id}","type":"test.created","data":{{"n":1}}}}"#).into_bytes()
}

/// Posts an event; `(status, Hookrouter-Event-Id)`, or `None` when the connection failed or
/// no answer came within `within`.
async fn try_post(
    c: &HttpClient,
    url: &str,
    body: Vec<u8>,
    within: Duration,
) -> Option<(u16, String)> {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .ok()?;
    let exchange = async {
        let resp = c.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let id = resp
            .headers()
            .get("hookrouter-event-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        Some((status, id))
    };
    tokio::time::timeout(within, exchange).await.ok().flatten()
}

/// Posts an event that must be accepted; the router's event id.
async fn accepted(r: &Router, provider_id: &str) -> String {
    let (status, id) = try_post(&client(), &r.url("/in"), body(provider_id), WAIT)
        .await
        .expect("an answer");
    assert_eq!(status, 202, "{provider_id}; log:\n{}", tail(r));
    assert!(!id.is_empty());
    id
}

/// The router's own last log lines (the NATS client's debug lines left out), for failures.
fn tail(r: &Router) -> String {
    let logs = r.logs();
    let own: Vec<&str> = logs.lines().filter(|l| !l.contains("async_nats")).collect();
    own[own.len().saturating_sub(80)..].join("\n")
}

fn header(seen: &crate::support::Seen, name: &str) -> String {
    seen.headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("<binary>").to_string())
        .unwrap_or_default()
}

/// The provider id (`id` in the JSON body) of a delivery.
fn provider_id(seen: &crate::support::Seen) -> String {
    serde_json::from_slice::<Value>(&seen.body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Deliveries per provider id.
fn by_provider(t: &Target) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for s in t.all() {
        *out.entry(provider_id(&s)).or_default() += 1;
    }
    out
}

/// Deliveries per `Hookrouter-Event-Id`.
fn by_event_id(t: &Target) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for s in t.all() {
        *out.entry(header(&s, "hookrouter-event-id")).or_default() += 1;
    }
    out
}

fn admin_url(r: &Router, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", r.admin_port)
}

async fn api(r: &Router, method: &str, path: &str) -> Answer {
    let auth = format!("Bearer {TOKEN}");
    send(
        &client(),
        method,
        &admin_url(r, path),
        &[("authorization", &auth)],
        b"",
    )
    .await
}

fn json(a: &Answer) -> Value {
    serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&a.body)))
}

/// `GET` on the admin API, which must answer 200 with JSON.
async fn api_json(r: &Router, path: &str) -> Value {
    let a = api(r, "GET", path).await;
    assert_eq!(
        a.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&a.body)
    );
    json(&a)
}

async fn metrics(r: &Router) -> String {
    let a = send(&client(), "GET", &admin_url(r, "/metrics"), &[], b"").await;
    assert_eq!(a.status, 200);
    String::from_utf8_lossy(&a.body).into_owned()
}

/// Sum of the samples of `name` whose labels contain every one of `labels` (`key="value"`).
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The delivery to `target` of event `id` as the API shows it: (state, attempts).
async fn delivery(r: &Router, id: &str, target: &str) -> (String, u64) {
    let a = api(r, "GET", &format!("/api/v1/events/{id}")).await;
    if a.status != 200 {
        return (format!("HTTP {}", a.status), 0);
    }
    let e = json(&a);
    e["deliveries"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["target"] == target))
        .map(|d| {
            (
                d["state"].as_str().unwrap_or("").to_string(),
                d["attempts"].as_u64().unwrap_or(0),
            )
        })
        .unwrap_or_default()
}

/// Polls the API of `r` until the delivery is in `state`; its attempts.
async fn wait_delivery(r: &Router, id: &str, target: &str, state: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, n) = delivery(r, id, target).await;
        if s == state {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "event {id} to {target} stayed `{s}` ({n} attempts), expected `{state}`; log:\n{}",
            tail(r)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the CLI off the runtime's threads, with `HOOKROUTER_ADMIN_TOKEN` unset.
async fn cli(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hookrouter"))
            .args(&args)
            .env_remove("HOOKROUTER_ADMIN_TOKEN")
            .output()
            .expect("run hookrouter")
    })
    .await
    .expect("cli task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_queue() {
    const N: usize = 200;
    let nats = NatsServer::start();
    let a = Target::start(Reply {
        delay: Duration::from_millis(5),
        ..Reply::default()
    })
    .await;
    let b = Target::start(Reply::default()).await;
    // A few slots per target and instance, so one instance cannot take every delivery.
    let yaml = head(
        &nats,
        "2s",
        &format!(
            "  a: {{ url: \"{}\", max_in_flight: 4 }}\n  b: {{ url: \"{}\", max_in_flight: 4 }}",
            a.url("/a"),
            b.url("/b")
        ),
    ) + &route(&["a", "b"]);
    let r1 = Router::start(&yaml);
    let r2 = Router::start(&yaml);

    // Provider id → router id, from the 202; even events to r1, odd ones to r2.
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let urls = [r1.url("/in"), r2.url("/in")];
    let mut senders = Vec::new();
    for s in 0..8 {
        let acked = acked.clone();
        let urls = urls.clone();
        senders.push(tokio::spawn(async move {
            let c = client();
            for n in (s..N).step_by(8) {
                let pid = format!("evt_{n}");
                let answer = try_post(&c, &urls[n % 2], body(&pid), WAIT).await;
                let (status, id) = answer.expect("an answer");
                assert_eq!(status, 202, "{pid}");
                acked.lock().expect("lock").insert(pid, id);
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), N);
    let distinct: HashSet<&String> = acked.values().collect();
    assert_eq!(distinct.len(), N, "every event has its own router id");

    let complete = |t: &Target| {
        let seen = by_provider(t);
        acked.keys().all(|p| seen.contains_key(p))
    };
    let done = eventually(Duration::from_secs(30), || complete(&a) && complete(&b)).await;
    assert!(
        done,
        "a got {} of {N}, b got {}; logs:\n{}\n---\n{}",
        by_provider(&a).len(),
        by_provider(&b).len(),
        tail(&r1),
        tail(&r2)
    );
    // Longer than ack_wait: an unacknowledged delivery would come back by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, t) in [("a", &a), ("b", &b)] {
        assert_eq!(t.count(), N, "{name}: one request per event");
        let per_provider = by_provider(t);
        let per_event = by_event_id(t);
        assert_eq!(per_provider.len(), N, "{name}");
        assert!(per_provider.values().all(|n| *n == 1), "{name}");
        for s in t.all() {
            let pid = provider_id(&s);
            assert_eq!(
                header(&s, "hookrouter-event-id"),
                acked[&pid],
                "{name}: {pid} carries the id its 202 gave"
            );
            assert_eq!(header(&s, "hookrouter-attempt"), "1", "{name}: {pid}");
            assert_eq!(header(&s, "hookrouter-route"), "r");
            assert_eq!(s.body, body(&pid), "{name}: the raw body");
        }
        assert_eq!(per_event.len(), N, "{name}");
    }

    // Both instances delivered, and together exactly once per event and target.
    let delivered = |text: &str, target: &str| {
        metric_sum(
            text,
            "hookrouter_deliveries_total",
            &[&format!("target=\"{target}\""), "result=\"delivered\""],
        )
    };
    let (m1, m2) = (metrics(&r1).await, metrics(&r2).await);
    let split: Vec<(f64, f64)> = ["a", "b"]
        .iter()
        .map(|t| (delivered(&m1, t), delivered(&m2, t)))
        .collect();
    eprintln!("two_instances_share_the_queue: deliveries (r1, r2) to a, b: {split:?}");
    for (t, (d1, d2)) in ["a", "b"].iter().zip(&split) {
        assert_eq!(d1 + d2, N as f64, "{t}: {split:?}");
        assert!(
            *d1 > 0.0 && *d2 > 0.0,
            "{t}: both instances deliver: {split:?}"
        );
    }
    // Either instance lists every event, each delivered once to both targets.
    let listed = api_json(&r2, "/api/v1/events?limit=1000").await;
    let events = listed["events"].as_array().expect("events");
    assert_eq!(events.len(), N);
    let listed_ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    let acked_ids: HashSet<&str> = acked.values().map(String::as_str).collect();
    assert_eq!(listed_ids, acked_ids);
    for e in events {
        let ds: Vec<(&str, &str, u64)> = e["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| {
                (
                    d["target"].as_str().unwrap_or(""),
                    d["state"].as_str().unwrap_or(""),
                    d["attempts"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(ds, [("a", "delivered", 1), ("b", "delivered", 1)], "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_across_instances() {
    let mut nats = NatsServer::start();
    let t = Target::start(Reply::default()).await;
    let yaml = head(&nats, "5s", &format!("  t: {{ url: \"{}\" }}", t.url("/"))) + &route(&["t"]);
    let r1 = Router::start(&yaml);
    let r2 = Router::start(&yaml);
    let c = client();

    let first = try_post(&c, &r1.url("/in"), body("evt_X"), WAIT).await;
    let (status, id) = first.expect("an answer");
    assert_eq!(status, 202);
    let second = try_post(&c, &r2.url("/in"), body("evt_X"), WAIT).await;
    assert_eq!(
        second,
        Some((200, id.clone())),
        "the other instance knows it: 200 with the first event's id; log:\n{}",
        tail(&r2)
    );
    // Back at the first instance, and once more at the second: still the same event.
    let third = try_post(&c, &r1.url("/in"), body("evt_X"), WAIT).await;
    assert_eq!(third, Some((200, id.clone())));
    // Another provider id is another event.
    let other = try_post(&c, &r2.url("/in"), body("evt_Y"), WAIT).await;
    let (status, other_id) = other.expect("an answer");
    assert_eq!(status, 202);
    assert_ne!(other_id, id);

    assert!(eventually(WAIT, || t.count() == 2).await, "{}", t.count());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(t.count(), 2, "evt_X delivered once, evt_Y once");
    let ids = by_event_id(&t);
    assert_eq!(ids.get(&id), Some(&1));
    assert_eq!(ids.get(&other_id), Some(&1));
    // Both instances count the duplicates they answered.
    let dup = |text: &str| {
        metric_sum(
            text,
            "hookrouter_requests_total",
            &["route=\"r\"", "outcome=\"duplicate\""],
        )
    };
    assert_eq!(dup(&metrics(&r1).await), 1.0);
    assert_eq!(dup(&metrics(&r2).await), 1.0);

    // JetStream remembers the event across a restart of the NATS server.
    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let again = loop {
        let a = try_post(&c, &r2.url("/in"), body("evt_X"), WAIT).await;
        match a {
            Some((503, _)) | None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other,
        }
    };
    assert_eq!(again, Some((200, id.clone())), "{}", tail(&r2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_instance_under_load() {
    const SENDERS: usize = 3;
    const MAX_IN_FLIGHT: usize = 16;
    let nats = NatsServer::start();
    // Slow enough that deliveries are in flight at the kill.
    let t = Target::start(Reply {
        delay: Duration::from_millis(20),
        ..Reply::default()
    })
    .await;
    let yaml = head(
        &nats,
        "2s",
        &format!(
            "  t: {{ url: \"{}\", max_in_flight: {MAX_IN_FLIGHT}, timeout: 5s }}",
            t.url("/")
        ),
    ) + &route(&["t"]);
    let mut r1 = Router::start(&yaml);
    let r2 = Router::start(&yaml);

    // Provider id → (router id, which instance answered 202).
    let acked: Arc<Mutex<HashMap<String, (String, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let after_kill = Arc::new(Mutex::new(0usize));
    let mut senders = Vec::new();
    for (which, url) in [(1usize, r1.url("/in")), (2, r2.url("/in"))] {
        for s in 0..SENDERS {
            let (acked, stop, killed, after_kill) = (
                acked.clone(),
                stop.clone(),
                killed.clone(),
                after_kill.clone(),
            );
            let url = url.clone();
            senders.push(tokio::spawn(async move {
                let c = client();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let pid = format!("evt_{which}_{s}_{i}");
                    let was_killed = killed.load(Ordering::Relaxed);
                    match try_post(&c, &url, body(&pid), Duration::from_secs(10)).await {
                        Some((202, id)) => {
                            acked.lock().expect("lock").insert(pid, (id, which));
                            if was_killed {
                                *after_kill.lock().expect("lock") += 1;
                            }
                        }
                        Some((status, _)) => panic!("{pid}: unexpected {status}"),
                        // The killed instance: connection refused from now on.
                        None => {
                            assert_eq!(which, 1, "{pid}: the surviving instance did not answer");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let seen_at_kill = t.count();
    killed.store(true, Ordering::Relaxed);
    r1.kill_hard();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.expect("sender");
    }
    let acked = acked.lock().expect("lock").clone();
    let from1 = acked.values().filter(|(_, w)| *w == 1).count();
    let from2 = acked.len() - from1;
    let after_kill = *after_kill.lock().expect("lock");
    assert!(from1 >= 20, "instance 1 acknowledged only {from1}");
    assert!(from2 >= 20, "instance 2 acknowledged only {from2}");
    assert!(
        after_kill >= 20,
        "instance 2 kept accepting after the kill: {after_kill}"
    );

    // Every acknowledged event arrives, whichever instance took it.
    let started = Instant::now();
    let all_there = || {
        let seen = by_provider(&t);
        acked.keys().all(|p| seen.contains_key(p))
    };
    let done = eventually(Duration::from_secs(60), all_there).await;
    let seen = by_provider(&t);
    let missing: Vec<&String> = acked.keys().filter(|p| !seen.contains_key(*p)).collect();
    assert!(
        done,
        "{} of {} acknowledged events never arrived, e.g. {:?}; log of instance 2:\n{}",
        missing.len(),
        acked.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        tail(&r2)
    );
    let drained_in = started.elapsed();
    // Past ack_wait once more: late repeats show up now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = by_provider(&t);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    for s in t.all() {
        let pid = provider_id(&s);
        if let Some((id, _)) = acked.get(&pid) {
            assert_eq!(
                &header(&s, "hookrouter-event-id"),
                id,
                "a repeat carries the event's id"
            );
        } else {
            // Stored by instance 1 just before the kill, its 202 lost: delivered all the same.
            assert!(pid.starts_with("evt_1_"), "{pid} was never sent");
        }
    }
    eprintln!(
        "sigkill_one_instance_under_load: acknowledged {} ({from1} by the killed instance, \
         {after_kill} after the kill), the target had {seen_at_kill} requests at the kill, \
         {} deliveries in all, {duplicates} duplicates, drained {drained_in:?} after the load",
        acked.len(),
        t.count()
    );
    // Only deliveries the killed instance held (its slots, plus acks not yet sent) repeat.
    assert!(
        duplicates <= 3 * MAX_IN_FLIGHT,
        "{duplicates} duplicates for {MAX_IN_FLIGHT} slots"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_under_load() {
    outage_under_load("nats_restart_under_load", false).await;
}

/// Like `nats_restart_under_load`, the NATS server killed with SIGKILL instead (a crash): no
/// event it acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_crash_under_load() {
    outage_under_load("nats_crash_under_load", true).await;
}

/// Two routers under steady load while the NATS server goes away for 2 s (stopped, or killed
/// when `crash`) and comes back on the same port and store: every request is answered 202 or
/// 503 within the bound, some 503s during the outage, 202s again by themselves afterwards, and
/// every accepted event is delivered.
async fn outage_under_load(name: &str, crash: bool) {
    let mut nats = NatsServer::start();
    let t = Target::start(Reply::default()).await;
    let yaml = head(&nats, "3s", &format!("  t: {{ url: \"{}\" }}", t.url("/"))) + &route(&["t"]);
    let r1 = Router::start(&yaml);
    let r2 = Router::start(&yaml);
    let epoch = Instant::now();

    /// One request: provider id, which instance, sent and answered (ms from the start),
    /// status (0: no answer within the bound or the connection failed).
    #[derive(Debug, Clone)]
    struct Sent {
        pid: String,
        which: usize,
        sent_ms: u128,
        took_ms: u128,
        status: u16,
    }
    let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let urls = [r1.url("/in"), r2.url("/in")];
    let mut senders = Vec::new();
    for s in 0..4usize {
        let (log, stop, urls) = (log.clone(), stop.clone(), urls.clone());
        senders.push(tokio::spawn(async move {
            let c = client();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let which = (s + i) % 2;
                let pid = format!("evt_{s}_{i}");
                let sent = epoch.elapsed();
                let answer = try_post(&c, &urls[which], body(&pid), Duration::from_secs(15)).await;
                let took = epoch.elapsed() - sent;
                let status = answer.map_or(0, |(s, _)| s);
                log.lock().expect("lock").push(Sent {
                    pid,
                    which: which + 1,
                    sent_ms: sent.as_millis(),
                    took_ms: took.as_millis(),
                    status,
                });
                if status != 202 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if crash {
        nats.kill_hard();
    } else {
        nats.stop();
    }
    let down_ms = epoch.elapsed().as_millis();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    nats.start_again();
    let up_ms = epoch.elapsed().as_millis();

    // Both instances accept again by themselves: a 202 for a request sent after the restart.
    let recovered = |which: usize| {
        log.lock()
            .expect("lock")
            .iter()
            .any(|s| s.which == which && s.sent_ms > up_ms && s.status == 202)
    };
    let back = eventually(Duration::from_secs(20), || recovered(1) && recovered(2)).await;
    let recovered_ms = epoch.elapsed().as_millis() - up_ms;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.expect("sender");
    }
    let log = log.lock().expect("lock").clone();
    assert!(
        back,
        "the routers did not accept again within 20 s of the restart; logs:\n{}\n---\n{}",
        tail(&r1),
        tail(&r2)
    );
    let count = |f: &dyn Fn(&Sent) -> bool| log.iter().filter(|s| f(s)).count();
    let ok = count(&|s| s.status == 202);
    let unavailable = count(&|s| s.status == 503);
    let during = count(&|s| s.status == 503 && s.sent_ms + s.took_ms >= down_ms);
    let slowest = log.iter().map(|s| s.took_ms).max().unwrap_or(0);
    eprintln!(
        "{name}: {} requests, {ok} accepted, {unavailable} answered 503 \
         (NATS down at {down_ms} ms, up at {up_ms} ms, both routers accepting again \
         {recovered_ms} ms later), slowest answer {slowest} ms",
        log.len()
    );
    let odd: Vec<&Sent> = log
        .iter()
        .filter(|s| s.status != 202 && s.status != 503)
        .take(5)
        .collect();
    assert!(
        odd.is_empty(),
        "only 202 or 503, always within the bound: {odd:?}"
    );
    assert!(ok >= 100, "too few accepted: {ok}");
    // The outage must have been felt: a 503, or a request sent while NATS was down that was
    // held and answered 202 only after it was back (the client resent the buffered publish
    // after reconnecting; the 202 still came only with JetStream's acknowledgement).
    let held_through = count(&|s| {
        s.status == 202
            && s.sent_ms >= down_ms
            && s.sent_ms < up_ms
            && s.sent_ms + s.took_ms >= up_ms
    });
    assert!(
        during > 0 || held_through > 0,
        "no 503 and no request held through the outage: the test proved nothing"
    );
    assert!(
        count(&|s| s.status == 202 && s.sent_ms < down_ms) > 0
            && count(&|s| s.status == 202 && s.sent_ms > up_ms) > 0,
        "accepted before and after the outage"
    );

    // Every accepted event is delivered.
    let acked: HashSet<String> = log
        .iter()
        .filter(|s| s.status == 202)
        .map(|s| s.pid.clone())
        .collect();
    let all_there = || {
        let seen = by_provider(&t);
        acked.iter().all(|p| seen.contains_key(p))
    };
    let done = eventually(Duration::from_secs(45), all_there).await;
    let seen = by_provider(&t);
    let missing: Vec<&String> = acked.iter().filter(|p| !seen.contains_key(*p)).collect();
    assert!(
        done,
        "{} of {} accepted events never arrived, e.g. {:?}; logs:\n{}\n---\n{}",
        missing.len(),
        acked.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        tail(&r1),
        tail(&r2)
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("{name}: {duplicates} duplicate deliveries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_dead_letters_and_replay() {
    let nats = NatsServer::start();
    let t = Target::start(Reply {
        status: 500,
        body: "broken",
        ..Reply::default()
    })
    .await;
    let yaml = head(
        &nats,
        "5s",
        &format!(
            "  t: {{ url: \"{}\", retry: {{ initial: 100ms, max_attempts: 3 }} }}",
            t.url("/")
        ),
    ) + &route(&["t"]);
    let r1 = Router::start(&yaml);
    let r2 = Router::start(&yaml);

    // Accepted by instance 1; three attempts (by whichever instance), then a dead letter.
    let id = accepted(&r1, "evt_dead_1").await;
    let attempts = wait_delivery(&r1, &id, "t", "dead").await;
    assert_eq!(attempts, 3);
    assert_eq!(t.count(), 3, "max_attempts: 3");
    let attempt_headers: Vec<String> = t
        .all()
        .iter()
        .map(|s| header(s, "hookrouter-attempt"))
        .collect();
    assert_eq!(attempt_headers, ["1", "2", "3"]);
    // Both instances see the same dead letter.
    for r in [&r1, &r2] {
        let dlq = api_json(r, "/api/v1/dlq").await;
        let dead = dlq["dead_letters"].as_array().expect("dead_letters");
        assert_eq!(dead.len(), 1, "{dlq}");
        assert_eq!(dead[0]["id"], id.as_str());
        assert_eq!(dead[0]["provider_id"], "evt_dead_1");
        assert_eq!(dead[0]["deliveries"][0]["target"], "t");
        assert_eq!(dead[0]["deliveries"][0]["state"], "dead");
        assert_eq!(dead[0]["deliveries"][0]["attempts"], 3);
        assert_eq!(dead[0]["deliveries"][0]["last_status"], 500);
        let e = api_json(r, &format!("/api/v1/events/{id}")).await;
        let list: Vec<(u64, u64)> = e["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| {
                (
                    a["attempt"].as_u64().unwrap_or(0),
                    a["status"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(list, [(1, 500), (2, 500), (3, 500)], "{e}");
        let q = api_json(r, "/api/v1/queue").await;
        assert_eq!(q["dead"], 1, "{q}");
    }
    // Nothing more is attempted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.count(), 3);

    // The target is fixed; replay every dead letter through the other instance.
    t.set_reply(Reply::default());
    let a = api(&r2, "POST", "/api/v1/dlq/replay?all=true").await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(json(&a), serde_json::json!({ "replayed": 1 }));
    assert!(
        eventually(WAIT, || t.count() == 4).await,
        "{}; logs:\n{}\n---\n{}",
        t.count(),
        tail(&r1),
        tail(&r2)
    );
    let last = t.last();
    assert_eq!(header(&last, "hookrouter-attempt"), "4", "attempts go on");
    assert_eq!(header(&last, "hookrouter-event-id"), id);
    assert_eq!(last.body, body("evt_dead_1"));
    assert_eq!(wait_delivery(&r1, &id, "t", "delivered").await, 4);
    assert_eq!(wait_delivery(&r2, &id, "t", "delivered").await, 4);
    for r in [&r1, &r2] {
        let dlq = api_json(r, "/api/v1/dlq").await;
        assert_eq!(dlq["dead_letters"], serde_json::json!([]), "{dlq}");
    }
    let e = api_json(&r2, &format!("/api/v1/events/{id}")).await;
    let statuses: Vec<u64> = e["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["status"].as_u64())
        .collect();
    assert_eq!(statuses, [500, 500, 500, 200], "{e}");
    // A second replay of all dead letters finds none.
    let a = api(&r1, "POST", "/api/v1/dlq/replay?all=true").await;
    assert_eq!(json(&a), serde_json::json!({ "replayed": 0 }));

    // Once more through the CLI, at the other instance than the one that accepted it.
    t.set_reply(Reply {
        status: 500,
        ..Reply::default()
    });
    let id2 = accepted(&r2, "evt_dead_2").await;
    assert_eq!(wait_delivery(&r2, &id2, "t", "dead").await, 3);
    assert_eq!(t.count(), 7);
    t.set_reply(Reply::default());
    let cfg = r1.config.display().to_string();
    let o = cli(&["dlq", "list", "-c", &cfg]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains(&id2) && !out.contains(&id), "{out}");
    let o = cli(&["dlq", "replay", "--all", "-c", &cfg]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("replayed 1 delivery"), "{out}");
    assert!(eventually(WAIT, || t.count() == 8).await, "{}", t.count());
    let last = t.last();
    assert_eq!(header(&last, "hookrouter-event-id"), id2);
    assert_eq!(header(&last, "hookrouter-attempt"), "4");
    assert_eq!(wait_delivery(&r2, &id2, "t", "delivered").await, 4);
    let o = cli(&["events", "show", &id2, "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("provider id  evt_dead_2"), "{out}");
    assert!(out.contains("delivered"), "{out}");
    let o = cli(&["dlq", "list", "-c", &cfg]).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "no dead letters");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.count(), 8, "each replay delivers once");
}

/// The `instances` object of `GET /api/v1/instances`.
async fn instances(r: &Router) -> Value {
    api_json(r, "/api/v1/instances").await
}

/// Polls until `cond` holds for the instances as both routers show them (and their gauges).
async fn wait_cluster(
    routers: [&Router; 2],
    what: &str,
    cond: impl Fn(&Value, &str) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut views = Vec::new();
        let mut ok = true;
        for r in routers {
            let v = instances(r).await;
            let m = metrics(r).await;
            ok &= cond(&v, &m);
            views.push(v);
        }
        if ok {
            return views;
        }
        assert!(Instant::now() < deadline, "{what}: {views:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_and_config_generations() {
    let nats = NatsServer::start();
    let a = Target::start(Reply::default()).await;
    let b = Target::start(Reply::default()).await;
    // The same file for both instances: ports come from the environment.
    let yaml = |targets: &str, routes: &str| {
        format!(
            r#"listen:
  - addr: "127.0.0.1:${{env:HR_TEST_PORT}}"
admin: {{ addr: "127.0.0.1:${{env:HR_TEST_ADMIN}}", token: "{TOKEN}" }}
queue:
  nats:
    url: "{url}"
    ack_wait: 5s
targets:
{targets}
{routes}"#,
            url = nats.url()
        )
    };
    let one_target = format!("  a: {{ url: \"{}\" }}", a.url("/a"));
    let first = yaml(&one_target, &route(&["a"]));
    let start = |text: &str| {
        let (port, admin) = (free_port(), free_port());
        Router::start_on(
            tempfile::tempdir().expect("tempdir"),
            text,
            &[
                ("HR_TEST_PORT", port.to_string()),
                ("HR_TEST_ADMIN", admin.to_string()),
            ],
            port,
            admin,
        )
    };
    let r1 = start(&first);
    let r2 = start(&first);
    assert_eq!(
        std::fs::read(&r1.config).expect("config"),
        std::fs::read(&r2.config).expect("config")
    );
    let id1 = instances(&r1).await["this"]
        .as_str()
        .expect("this")
        .to_string();
    let id2 = instances(&r2).await["this"]
        .as_str()
        .expect("this")
        .to_string();
    assert_ne!(id1, id2);

    let gauge = |m: &str, name: &str| metric_sum(m, name, &[]);
    let views = wait_cluster([&r1, &r2], "two instances, one config", |v, m| {
        v["instances"].as_array().map(Vec::len) == Some(2)
            && v["config_versions"] == 1
            && gauge(m, "hookrouter_cluster_instances") == 2.0
            && gauge(m, "hookrouter_cluster_config_versions") == 1.0
    })
    .await;
    for (v, me) in views.iter().zip([&id1, &id2]) {
        assert_eq!(v["this"], me.as_str());
        let list = v["instances"].as_array().expect("instances");
        let ids: HashSet<&str> = list.iter().filter_map(|i| i["id"].as_str()).collect();
        assert_eq!(ids, HashSet::from([id1.as_str(), id2.as_str()]), "{v}");
        for i in list {
            assert_eq!(i["generation"], 1, "{v}");
            assert_eq!(i["version"], env!("CARGO_PKG_VERSION"), "{v}");
            for key in ["host", "config_digest", "started_at", "seen_at"] {
                assert!(i[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {v}");
            }
        }
        assert_eq!(list[0]["config_digest"], list[1]["config_digest"]);
    }

    // Instance 1 reloads a config with a new target `b` on the route and a second route.
    let two_targets = format!("{one_target}\n  b: {{ url: \"{}\" }}", b.url("/b"));
    let second = yaml(
        &two_targets,
        &(route(&["a", "b"])
            + r#"  - name: other
    path: /other
    deliver: [ { target: a } ]
"#),
    );
    r1.write_config(&second);
    r1.signal("HUP");
    assert!(r1.wait_log("configuration reloaded", WAIT), "{}", tail(&r1));
    let gen_of = |v: &Value, id: &str| {
        v["instances"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["id"] == id))
            .map(|i| i["generation"].clone())
    };
    let views = wait_cluster([&r1, &r2], "config_versions 2 after the reload", |v, m| {
        v["config_versions"] == 2
            && gen_of(v, &id1) == Some(2.into())
            && gen_of(v, &id2) == Some(1.into())
            && gauge(m, "hookrouter_cluster_config_versions") == 2.0
            && gauge(m, "hookrouter_cluster_instances") == 2.0
    })
    .await;
    let digests: HashSet<&str> = views[0]["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["config_digest"].as_str())
        .collect();
    assert_eq!(digests.len(), 2, "{:#?}", views[0]);
    assert_eq!(
        gauge(&metrics(&r1).await, "hookrouter_config_generation"),
        2.0
    );

    // Events sent after the reload reach the new target through instance 1; instance 2
    // still runs the old route (only `a`).
    let mut via1 = Vec::new();
    for n in 0..5 {
        via1.push(accepted(&r1, &format!("evt_new_{n}")).await);
    }
    let via2 = accepted(&r2, "evt_old").await;
    assert!(
        eventually(WAIT, || b.count() == 5 && a.count() == 6).await,
        "a {} b {}; log:\n{}",
        a.count(),
        b.count(),
        tail(&r1)
    );
    let to_b: HashSet<String> = by_event_id(&b).into_keys().collect();
    assert_eq!(to_b, via1.iter().cloned().collect::<HashSet<_>>());
    assert!(!to_b.contains(&via2));
    let other = try_post(&client(), &r1.url("/other"), body("evt_other"), WAIT).await;
    assert_eq!(other.map(|(s, _)| s), Some(202));
    assert!(eventually(WAIT, || a.count() == 7).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((a.count(), b.count()), (7, 5));

    // Instance 2 takes the same file: one config again, both at generation 2.
    r2.write_config(&second);
    r2.signal("HUP");
    assert!(r2.wait_log("configuration reloaded", WAIT), "{}", tail(&r2));
    wait_cluster([&r1, &r2], "config_versions 1 again", |v, m| {
        v["config_versions"] == 1
            && gen_of(v, &id1) == Some(2.into())
            && gen_of(v, &id2) == Some(2.into())
            && gauge(m, "hookrouter_cluster_config_versions") == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_dead_letters_all_end_delivered() {
    const N: usize = 100;
    let nats = NatsServer::start();
    // A 400 is final: each delivery is dead after its first attempt.
    let t = Target::start(Reply {
        status: 400,
        ..Reply::default()
    })
    .await;
    let yaml = head(&nats, "5s", &format!("  t: {{ url: \"{}\" }}", t.url("/"))) + &route(&["t"]);
    let r1 = Router::start(&yaml);
    let r2 = Router::start(&yaml);
    let mut ids = Vec::new();
    for n in 0..N {
        ids.push(accepted(&r1, &format!("evt_{n}")).await);
    }
    assert!(eventually(WAIT, || t.count() == N).await, "{}", t.count());
    let deadline = Instant::now() + WAIT;
    loop {
        let q = api_json(&r2, "/api/v1/queue").await;
        if q["dead"] == N {
            break;
        }
        assert!(Instant::now() < deadline, "{q}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.set_reply(Reply::default());
    let a = api(&r2, "POST", "/api/v1/dlq/replay?all=true").await;
    assert_eq!(json(&a), serde_json::json!({ "replayed": N }));
    assert!(
        eventually(WAIT, || t.count() == 2 * N).await,
        "{}",
        t.count()
    );
    for s in &t.all()[N..] {
        assert_eq!(header(s, "hookrouter-attempt"), "2");
    }
    // Every replayed delivery is shown delivered (by either instance), none stays pending.
    let mut stuck = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    for id in &ids {
        loop {
            let (state, attempts) = delivery(&r1, id, "t").await;
            if (state.as_str(), attempts) == ("delivered", 2) {
                break;
            }
            if Instant::now() > deadline {
                stuck.push((id.clone(), state, attempts));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        stuck.is_empty(),
        "{} of {N} replayed and delivered events are not shown delivered: {stuck:?}",
        stuck.len()
    );
    let dlq = api_json(&r1, "/api/v1/dlq").await;
    assert_eq!(dlq["dead_letters"], serde_json::json!([]), "{dlq}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_instance_hands_its_deliveries_back() {
    const N: usize = 16;
    let nats = NatsServer::start();
    // Slow deliveries, and an ack_wait far longer than the test may wait.
    let t = Target::start(Reply {
        delay: Duration::from_millis(1000),
        ..Reply::default()
    })
    .await;
    let yaml = head(
        &nats,
        "60s",
        &format!("  t: {{ url: \"{}\", max_in_flight: 4 }}", t.url("/")),
    ) + &route(&["t"]);
    let mut r1 = Router::start(&yaml);
    let r2 = Router::start(&yaml);
    let mut ids = Vec::new();
    for n in 0..N {
        ids.push(accepted(&r1, &format!("evt_{n}")).await);
    }
    // Both instances have deliveries in flight.
    assert!(eventually(WAIT, || t.count() >= 8).await, "{}", t.count());
    let stopped = Instant::now();
    r1.signal("TERM");
    assert_eq!(
        r1.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        tail(&r1)
    );
    // Instance 1 left the list at once (not 30 s later).
    let v = instances(&r2).await;
    assert_eq!(v["instances"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["this"], v["instances"][0]["id"]);

    // What instance 1 held is delivered by instance 2 long before ack_wait.
    let mut pending = ids.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            if delivery(&r2, &id, "t").await.0 != "delivered" {
                still.push(id);
            }
        }
        pending = still;
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "{} deliveries not done 20 s after instance 1 stopped (ack_wait 60 s): {pending:?}; log:\n{}",
            pending.len(),
            tail(&r2)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "a_stopping_instance_hands_its_deliveries_back: all delivered {:?} after the stop, {} requests for {N} events",
        stopped.elapsed(),
        t.count()
    );
}

/// Dead letters counted by `GET /api/v1/queue`.
async fn dead_count(r: &Router) -> Option<u64> {
    api_json(r, "/api/v1/queue").await["dead"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replayed_to_a_still_failing_target_are_dead_letters_again() {
    const N: usize = 100;
    let nats = NatsServer::start();
    let t = Target::start(Reply {
        status: 400,
        ..Reply::default()
    })
    .await;
    let yaml = head(&nats, "5s", &format!("  t: {{ url: \"{}\" }}", t.url("/"))) + &route(&["t"]);
    let r1 = Router::start(&yaml);
    let r2 = Router::start(&yaml);
    let mut ids = Vec::new();
    for n in 0..N {
        ids.push(accepted(&r1, &format!("evt_{n}")).await);
    }
    let deadline = Instant::now() + WAIT;
    while dead_count(&r2).await != Some(N as u64) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Replayed while the target still refuses: each delivery is dead again, and listed.
    let a = api(&r2, "POST", "/api/v1/dlq/replay?all=true").await;
    assert_eq!(json(&a), serde_json::json!({ "replayed": N }));
    assert!(
        eventually(WAIT, || t.count() == 2 * N).await,
        "{}",
        t.count()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let dead = dead_count(&r1).await;
        let dlq = api_json(&r1, "/api/v1/dlq?limit=1000").await;
        let listed: HashSet<&str> = dlq["dead_letters"]
            .as_array()
            .map(|l| l.iter().filter_map(|e| e["id"].as_str()).collect())
            .unwrap_or_default();
        if dead == Some(N as u64) && listed.len() == N {
            break;
        }
        if Instant::now() > deadline {
            let mut lost = Vec::new();
            for id in ids.iter().filter(|id| !listed.contains(id.as_str())) {
                lost.push((id.clone(), delivery(&r1, id, "t").await));
            }
            panic!(
                "after the replay failed again: {dead:?} dead letters counted, {} listed, \
                 expected {N}; not listed (state, attempts): {lost:?}",
                listed.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
