//! A store that runs out of space or fails to sync answers 503 and never 202.
//!
//! The store lives on a real filesystem that really fills up: a small tmpfs mounted for the
//! test (`write` fails with ENOSPC), or an ext4 image on a loop device whose backing file sits
//! on a full tmpfs (`write` succeeds into the page cache and `fdatasync` fails: the device
//! cannot store the blocks). Both need root (`mount`, `losetup`); without it the tests fail
//! and say so rather than pass without having run. Every mount is undone by a guard, also
//! when a test fails.
//!
//! Events are bigger than a memory page, so that once the filesystem has no free block no
//! journal record can fit in the slack of a file's last page: from then on, any 202 would be
//! a lie.

use std::{
    collections::{HashMap, HashSet},
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};

use crate::support::{Reply, Router, Target, client, eventually};

/// Body bytes of each event: more than a page (4 KiB), see the module doc.
const BODY_BYTES: usize = 6000;
/// Longest wait for one answer: a request the store never answers is a failure, not a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Concurrent senders.
const SENDERS: usize = 8;
/// Events sent once the filesystem has no free block, then again after a pause.
const FULL_BURST: usize = 200;
const FULL_LATER: usize = 20;

// === Filesystems ===

/// Runs a command that must succeed; the panic message says what failed and why.
fn must(cmd: &str, args: &[&str], what: &str) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run `{cmd}`: {e}"));
    assert!(
        out.status.success(),
        "{what}: `{cmd} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn uid() -> String {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A tmpfs of a fixed size mounted on a fresh temporary folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_str().expect("utf-8 temp path").to_string();
        let opts = format!("size={size}");
        must(
            "mount",
            &["-t", "tmpfs", "-o", &opts, "tmpfs", &path],
            &format!(
                "the disk-full tests mount a tmpfs and need root with CAP_SYS_ADMIN \
                 (uid here: {}); run them as root",
                uid()
            ),
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free blocks, as `statvfs` reports them to unprivileged writers.
    fn free_blocks(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a"])
            .arg(self.path())
            .output()
            .expect("stat -f");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("stat -f prints a number")
    }

    /// Creates `name` and writes it until the filesystem has no free block.
    fn fill(&self, name: &str) {
        let path = self.path().join(name);
        let mut f = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0x5a_u8; 64 << 10];
        // Whole chunks, then pages, then bytes (the slack of the file's last page).
        for size in [64 << 10, 4096, 1] {
            loop {
                match f.write(&chunk[..size]) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(self.dir.path());
    }
}

/// Unmounts `path`, lazily if something still holds it (never leaves a mount behind).
fn unmount(path: &Path) {
    let ok = Command::new("umount")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

// === Sending ===

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What one request got.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    event_id: Option<String>,
    retry_after: Option<String>,
}

/// A unique event of `BODY_BYTES` bytes.
fn event_body(n: u64) -> Vec<u8> {
    let head = format!(r#"{{"id":"evt_{n}","type":"disk.test","pad":""#);
    let mut body = head.into_bytes();
    body.resize(BODY_BYTES - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
}

/// POSTs event `n`; an error when there is no answer within [`ANSWER_WITHIN`].
async fn send_event(c: &HttpClient, url: &str, n: u64) -> Result<Answer, String> {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(event_body(n))))
        .expect("request");
    let resp = tokio::time::timeout(ANSWER_WITHIN, c.request(req))
        .await
        .map_err(|_| format!("event {n}: no answer within {ANSWER_WITHIN:?}"))?
        .map_err(|e| format!("event {n}: request failed: {e}"))?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let answer = Answer {
        status: resp.status().as_u16(),
        event_id: header("hookrouter-event-id"),
        retry_after: header("retry-after"),
    };
    tokio::time::timeout(ANSWER_WITHIN, resp.into_body().collect())
        .await
        .map_err(|_| format!("event {n}: body not finished within {ANSWER_WITHIN:?}"))?
        .map_err(|e| format!("event {n}: body failed: {e}"))?;
    Ok(answer)
}

/// Every answer so far, and the events that got a 202 (router id → event number).
#[derive(Default)]
struct Log {
    answers: Vec<(u64, Answer)>,
    acked: HashMap<String, u64>,
}

impl Log {
    /// Records an answer; panics on anything but 202 (with an event id) or 503 (with
    /// `Retry-After`).
    fn record(&mut self, n: u64, a: Answer, phase: &str) {
        match a.status {
            202 => {
                let id = a
                    .event_id
                    .clone()
                    .unwrap_or_else(|| panic!("{phase}: 202 without Hookrouter-Event-Id"));
                self.acked.insert(id, n);
            }
            503 => assert!(
                a.retry_after.is_some(),
                "{phase}: 503 without Retry-After: {a:?}"
            ),
            s => panic!("{phase}: event {n} got {s}; only 202 or 503 are acceptable: {a:?}"),
        }
        self.answers.push((n, a));
    }

    fn count(&self, status: u16) -> usize {
        self.answers
            .iter()
            .filter(|(_, a)| a.status == status)
            .count()
    }
}

/// Sends events from `SENDERS` concurrent clients until one gets a 503 (then the others
/// finish the request they are in) or `within` passes; every answer is recorded.
async fn fill_until_503(url: &str, log: &Arc<Mutex<Log>>, next: &Arc<AtomicU64>, within: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + within;
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (url, log, next, stop) = (url.to_string(), log.clone(), next.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let a = send_event(&c, &url, n)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if a.status == 503 {
                    stop.store(true, Ordering::Relaxed);
                }
                log.lock().expect("log").record(n, a, "filling the disk");
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let log = log.lock().expect("log");
    assert!(
        log.count(503) > 0,
        "no 503 within {within:?}: {} events got 202 and the disk never filled",
        log.count(202)
    );
}

/// Sends `count` events from `SENDERS` concurrent clients; their answers.
async fn burst(url: &str, next: &Arc<AtomicU64>, count: usize) -> Vec<(u64, Answer)> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let left = Arc::new(AtomicU64::new(count as u64));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (url, next, out, left) = (url.to_string(), next.clone(), out.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok()
            {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let a = send_event(&c, &url, n)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                out.lock().expect("out").push((n, a));
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    out.lock().expect("out").clone()
}

/// Sends one event every 100 ms until one gets a 202 (recorded), within `within`.
async fn until_accepted(
    url: &str,
    log: &Arc<Mutex<Log>>,
    next: &Arc<AtomicU64>,
    within: Duration,
    router: &Router,
) -> Duration {
    let c = client();
    let started = Instant::now();
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let a = send_event(&c, url, n)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = a.status;
        log.lock().expect("log").record(n, a, "after freeing space");
        if status == 202 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "ingest did not recover within {within:?} after space was freed; router log:\n{}",
            tail(&router.logs())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The router's last lines about its store (not the line per request), for failure messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("hookrouter::ingress") && !l.contains(" DEBUG "))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Router ids a target has seen.
fn seen_ids(t: &Target) -> HashSet<String> {
    t.all()
        .iter()
        .filter_map(|s| s.headers.get("hookrouter-event-id"))
        .map(|v| v.to_str().expect("id").to_string())
        .collect()
}

/// Waits until every acknowledged event but the `excused` is among `delivered()`; the
/// failure names some missing.
async fn all_delivered(
    delivered: impl Fn() -> HashSet<String>,
    log: &Arc<Mutex<Log>>,
    excused: &HashSet<String>,
    within: Duration,
    router: &Router,
) {
    let mut acked = log.lock().expect("log").acked.clone();
    acked.retain(|id, _| !excused.contains(id));
    let done = eventually(within, || {
        let seen = delivered();
        acked.keys().all(|id| seen.contains(id))
    })
    .await;
    let seen = delivered();
    let missing: Vec<_> = acked.iter().filter(|(id, _)| !seen.contains(*id)).collect();
    assert!(
        done,
        "{} of {} acknowledged events never delivered within {within:?}, e.g. (id, event) {:?}; \
         router log:\n{}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)],
        tail(&router.logs())
    );
}

/// A target that answers every other request 503 and the rest 200 (never five failures in a
/// row, so its circuit breaker stays closed): about half the events need a retry, whose body
/// the router reads back from its store.
#[derive(Clone)]
struct Alternating {
    addr: std::net::SocketAddr,
    /// Router ids answered 200.
    delivered: Arc<Mutex<HashSet<String>>>,
}

impl Alternating {
    async fn start() -> Alternating {
        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let t = Alternating {
            addr: listener.local_addr().expect("addr"),
            delivered: Arc::default(),
        };
        let count = Arc::new(AtomicU64::new(0));
        let tt = t.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (tt, count) = (tt.clone(), count.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (tt, count) = (tt.clone(), count.clone());
                        async move {
                            let id = req
                                .headers()
                                .get("hookrouter-event-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            let _ = req.into_body().collect().await;
                            let ok = count.fetch_add(1, Ordering::Relaxed) % 2 == 1;
                            if ok {
                                tt.delivered.lock().expect("delivered").insert(id);
                            }
                            let mut resp = http::Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = if ok {
                                http::StatusCode::OK
                            } else {
                                http::StatusCode::SERVICE_UNAVAILABLE
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        t
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn delivered(&self) -> HashSet<String> {
        self.delivered.lock().expect("delivered").clone()
    }
}

/// An async route to `target` with its store in `store`; `max_size` is far above what the
/// filesystem can hold, so the filesystem is the limit.
fn config(store: &Path, max_size: &str, target_url: &str) -> String {
    format!(
        r#"listen:
  - addr: "127.0.0.1:{{port}}"
admin: {{ addr: "127.0.0.1:{{admin}}" }}
queue: {{ embedded: {{ path: "{}", max_size: {} }} }}
targets:
  t: {{ url: "{}", retry: {{ max_attempts: 1000, initial: 20ms, max_delay: 200ms, max_age: 1h }} }}
routes:
  - name: r
    path: /in
    event: {{ type: "body:/type", id: "body:/id" }}
    deliver: [ {{ target: t }} ]
"#,
        store.display(),
        max_size,
        target_url
    )
}

/// Where the tmpfs tests deliver.
enum Sink {
    /// Answers 200.
    Healthy(Target),
    /// Answers every other request 503.
    Alternating(Alternating),
}

impl Sink {
    fn url(&self) -> String {
        match self {
            Sink::Healthy(t) => t.url("/"),
            Sink::Alternating(t) => t.url(),
        }
    }

    fn delivered(&self) -> HashSet<String> {
        match self {
            Sink::Healthy(t) => seen_ids(t),
            Sink::Alternating(t) => t.delivered(),
        }
    }
}

/// The scenario shared by the tmpfs tests: fill the disk until 503, make it completely full,
/// check only 503s come back, free the space, check ingest recovers by itself, and every 202'd
/// event reaches `sink`.
async fn full_tmpfs_scenario(sink: Sink, recovery: Recovery) {
    let fs = Tmpfs::mount("4m");
    let store = fs.path().join("data");
    let router = Router::start(&config(&store, "1GiB", &sink.url()));
    let url = router.url("/in");
    // Half the space goes to a filler file right away, so the disk fills in about a second.
    {
        let mut f = std::fs::File::create(fs.path().join("filler-1")).expect("filler");
        f.write_all(&vec![0x5a; 2 << 20]).expect("filler");
    }
    let log = Arc::new(Mutex::new(Log::default()));
    let next = Arc::new(AtomicU64::new(0));

    fill_until_503(&url, &log, &next, Duration::from_secs(60)).await;
    let filled = {
        let log = log.lock().expect("log");
        (log.count(202), log.count(503))
    };
    assert!(filled.0 > 0, "no event was accepted before the disk filled");

    // Now take every block that is left: no event can be stored any more.
    fs.fill("filler-2");
    assert_eq!(fs.free_blocks(), 0, "the tmpfs still has free blocks");
    let full = burst(&url, &next, FULL_BURST).await;
    let free_after = fs.free_blocks();
    for (n, a) in &full {
        assert!(
            a.status == 503,
            "event {n} got {} while the filesystem had no free block ({free_after} free after \
             the burst): {a:?}; router log:\n{}",
            a.status,
            tail(&router.logs())
        );
    }
    for (n, a) in full {
        log.lock().expect("log").record(n, a, "disk full");
    }
    // Deliveries keep failing or retrying against the full store for a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (n, a) in burst(&url, &next, FULL_LATER).await {
        assert_eq!(a.status, 503, "event {n} accepted on a full disk: {a:?}");
        log.lock().expect("log").record(n, a, "disk full");
    }

    // Free the space: ingest must come back without a restart.
    std::fs::remove_file(fs.path().join("filler-1")).expect("remove filler");
    std::fs::remove_file(fs.path().join("filler-2")).expect("remove filler");
    if let Recovery::AfterAQuietSecond = recovery {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let recovered_in = until_accepted(&url, &log, &next, Duration::from_secs(15), &router).await;
    let after = burst(&url, &next, 40).await;
    let refused = after.iter().filter(|(_, a)| a.status != 202).count();
    for (n, a) in after {
        log.lock().expect("log").record(n, a, "after recovery");
    }
    assert_eq!(
        refused, 0,
        "events refused after ingest recovered with space free"
    );

    let none = HashSet::new();
    all_delivered(
        || sink.delivered(),
        &log,
        &none,
        Duration::from_secs(30),
        &router,
    )
    .await;
    let log = log.lock().expect("log");
    eprintln!(
        "disk full ({}): {} accepted and {} refused while filling, \
         then {} refused on the full disk; recovered {recovered_in:?} after freeing; \
         {} acknowledged in all, all delivered",
        match sink {
            Sink::Healthy(_) => "healthy target",
            Sink::Alternating(_) => "every other delivery fails",
        },
        filled.0,
        filled.1,
        FULL_BURST + FULL_LATER,
        log.acked.len()
    );
}

/// How requests arrive once space is freed.
enum Recovery {
    /// Nothing for a second, then one request every 100 ms until one gets a 202.
    AfterAQuietSecond,
    /// One request every 100 ms from the moment space is freed, as providers retrying their
    /// 503'd events do.
    UnderSteadyTraffic,
}

/// The filesystem fills up: 503 (never 500, never a hang, never a 202 once it is full), every
/// 202'd event delivered, and 202 again by itself once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_503_and_ingest_recovers_when_space_is_freed() {
    let target = Target::start(Reply::default()).await;
    full_tmpfs_scenario(Sink::Healthy(target), Recovery::AfterAQuietSecond).await;
}

/// As above, with a target that fails every other delivery: retries read the event back from
/// the store, also while it cannot write (the database then lacks the events that only the
/// journal holds).
///
/// While the database is held back after a full disk, events acknowledged just before are only
/// in the journal: a retry of one of them must not take its event for removed (the store answers
/// "try again" until the database has caught up), so every acknowledged event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acknowledged_around_a_full_disk_are_retried_to_delivery() {
    let target = Alternating::start().await;
    full_tmpfs_scenario(Sink::Alternating(target), Recovery::AfterAQuietSecond).await;
}

/// Ingest recovers while requests keep coming: providers retry their 503'd events at once, so
/// a router that only recovers in a quiet moment stays down as long as they do.
///
/// The held-back transaction is retried on a deadline of its own, checked after every batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_recovers_under_steady_traffic_once_space_is_freed() {
    let target = Target::start(Reply::default()).await;
    full_tmpfs_scenario(Sink::Healthy(target), Recovery::UnderSteadyTraffic).await;
}

// === fsync failures ===

/// An ext4 filesystem on a loop device whose image is a file on a small tmpfs, with holes
/// where the filesystem's free blocks are. While the tmpfs is full, writes to the ext4 land in
/// the page cache and succeed, but writeback of any block the image does not hold fails, so
/// `fsync`/`fdatasync` fail (ENOSPC or EIO): a disk that accepts writes and cannot make them
/// durable. Freeing space on the tmpfs heals the device.
struct LoopFs {
    backing: Tmpfs,
    device: String,
    mnt: tempfile::TempDir,
    mounted: bool,
}

impl LoopFs {
    fn create() -> LoopFs {
        let backing = Tmpfs::mount("56m");
        let image = backing.path().join("disk.img");
        let img = image.to_str().expect("utf-8 path");
        // The whole image is written first (no holes), and mkfs may neither discard nor
        // "zero" by punching holes: every block of the filesystem's own metadata (journal,
        // inode tables, bitmaps) is then stored on the device. Only the free blocks, where
        // file data goes, become holes again (`trim`). So later only file data fails to be
        // written and the filesystem itself stays consistent (a failed metadata write would
        // corrupt files whatever the application does).
        {
            let mut f = std::fs::File::create(&image).expect("image");
            let mb = vec![0u8; 1 << 20];
            for _ in 0..48 {
                f.write_all(&mb).expect("write image");
            }
        }
        let out = Command::new("mkfs.ext4")
            .env("UNIX_IO_NOZEROOUT", "1")
            .args([
                "-q",
                "-b",
                "4096",
                "-E",
                "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
                img,
            ])
            .output()
            .expect("the fsync test needs mkfs.ext4 (Debian package e2fsprogs)");
        assert!(
            out.status.success(),
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let out = Command::new("losetup")
            .args(["-f", "--show", img])
            .output()
            .expect("the fsync test needs losetup (Debian package mount)");
        assert!(
            out.status.success(),
            "the fsync test needs a loop device (root, /dev/loop-control; uid here: {}): \
             losetup failed: {}",
            uid(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut fs = LoopFs {
            backing,
            device,
            mnt: tempfile::tempdir().expect("tempdir"),
            mounted: false,
        };
        fs.mount();
        fs.trim();
        fs
    }

    fn mount(&mut self) {
        let mnt = self.mnt.path().to_str().expect("utf-8 path").to_string();
        must(
            "mount",
            &["-o", "errors=continue", &self.device, &mnt],
            "mounting the ext4 image",
        );
        self.mounted = true;
    }

    /// Unmounts and mounts the ext4 again: its page cache is gone, and what was never
    /// written to the device with it, as after a power cut.
    fn remount(&mut self) {
        must(
            "umount",
            &[self.mnt.path().to_str().expect("path")],
            "unmounting the ext4",
        );
        self.mounted = false;
        self.mount();
    }

    fn path(&self) -> &Path {
        self.mnt.path()
    }

    /// Writes everything to the device (`syncfs`: data, and metadata to its home blocks),
    /// then discards the free blocks: the loop device punches them out of the image, so the
    /// device no longer stores them (blocks of removed files included).
    fn trim(&self) {
        let mnt = self.mnt.path().to_str().expect("path");
        must("sync", &["-f", mnt], "syncing the ext4");
        must(
            "fstrim",
            &[mnt],
            "discarding the ext4's free blocks (util-linux fstrim)",
        );
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            unmount(self.mnt.path());
        }
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
        // `backing` unmounts the tmpfs after this.
    }
}

/// Whether `fdatasync` fails on a file of `dir` just written (the device refuses blocks).
fn sync_fails(dir: &Path) -> bool {
    let path: PathBuf = dir.join("probe");
    let mut f = std::fs::File::create(&path).expect("probe");
    let failed = f
        .write_all(&vec![1u8; 256 << 10])
        .and_then(|()| f.sync_data())
        .is_err();
    drop(f);
    let _ = std::fs::remove_file(&path);
    failed
}

/// `hookrouter_queue_degraded` from the router's metrics (`None`: no answer or no such line).
fn degraded_gauge(router: &Router) -> Option<u8> {
    let (status, body) = crate::support::blocking_get(router.admin_port, "/metrics")?;
    if status != 200 {
        return None;
    }
    body.lines()
        .find_map(|l| l.strip_prefix("hookrouter_queue_degraded "))
        .and_then(|v| v.trim().parse().ok())
}

/// How many of the `excused` events were never delivered.
fn lost_by_device(excused: &HashSet<String>, seen: &HashSet<String>) -> usize {
    excused.iter().filter(|id| !seen.contains(*id)).count()
}

/// What happens after the device heals in [`fsync_scenario`].
enum After {
    /// Nothing more: every acknowledged event is delivered by the running router.
    Nothing,
    /// A power cut: the router killed and the filesystem's page cache dropped (so whatever a
    /// failed writeback lost is gone), then the router started again.
    PowerCut,
    /// A power cut while the store is degraded (syncs still failing, the database not rebuilt
    /// yet); the device heals before the router starts again.
    PowerCutWhileDegraded,
}

/// The disk takes writes but cannot make them durable: the store's syncs fail. Answers are
/// 202 or 503 only and the failures show as 503s, ingest recovers by itself once the device
/// works again, and every event that got a 202 is delivered, also after `after`.
///
/// A 202 while syncs fail is not wrong in itself: blocks the device stored before it filled
/// can still be rewritten, so a sync may succeed now and then. But this device can drop a
/// write it reported as stored: the loop driver counts a short write to its backing file as
/// a success, so a write spanning a block the image holds and one it cannot hold (the tmpfs
/// is full) "succeeds" with its second part lost, and `fdatasync` reports no error. A record
/// appended across a block boundary then reads back with zeros after a power cut, whatever
/// the writer does; no store keeps what its disk drops. So the power-cut checks excuse the
/// events accepted while syncs failed (and report how many were lost); every event
/// accepted before the failures and after the device healed must survive, and those are
/// the ones a store that trusted a later sync lost. `max_size` is small enough that
/// journal segments rotate (1 MiB) and are removed once the database holds them durably, so
/// the database's own syncs matter too.
async fn fsync_scenario(after: After) {
    let mut fs = LoopFs::create();
    // Before a power cut the target refuses, so deliveries stay pending in the store across
    // it and must come from what the store made durable.
    let target = Target::start(Reply {
        status: match after {
            After::Nothing => 200,
            After::PowerCut | After::PowerCutWhileDegraded => 503,
        },
        ..Reply::default()
    })
    .await;
    let store = fs.path().join("data");
    let mut router = Router::start(&config(&store, "16MiB", &target.url("/")));
    let url = router.url("/in");
    let log = Arc::new(Mutex::new(Log::default()));
    let next = Arc::new(AtomicU64::new(0));

    for (n, a) in burst(&url, &next, 200).await {
        assert_eq!(a.status, 202, "event {n} refused on a healthy disk: {a:?}");
        log.lock().expect("log").record(n, a, "healthy disk");
    }

    // Everything so far goes to the device, the filesystem's metadata included (ext4 writes
    // metadata to its journal first and to its home blocks later), and the free blocks are
    // punched out of the image. Then fill the tmpfs under the image: from now on the device
    // cannot store blocks it does not hold yet.
    fs.trim();
    fs.backing.fill("filler");
    assert!(
        sync_fails(fs.path()),
        "fdatasync still succeeds on the ext4 whose device is full"
    );
    // Events while syncs fail, until the database's own syncs have failed too: its
    // checkpoints sync the write-ahead log and the database file, but one that only rewrites
    // blocks the device still holds succeeds, so it may take more events. Then the store no
    // longer trusts the database, says so (log, metrics) and keeps every journal segment.
    let mut failing = burst(&url, &next, 200).await;
    let until = Instant::now() + Duration::from_secs(20);
    let lost_a_write = || router.logs().contains("queue database lost a write");
    while !lost_a_write() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(300)).await;
        failing.extend(burst(&url, &next, 20).await);
    }
    let sync_still_fails = sync_fails(fs.path());
    // What a power cut may take of these is up to the device, not the store (see above).
    let excused: HashSet<String> = match after {
        After::Nothing => HashSet::new(),
        After::PowerCut | After::PowerCutWhileDegraded => failing
            .iter()
            .filter(|(_, a)| a.status == 202)
            .filter_map(|(_, a)| a.event_id.clone())
            .collect(),
    };
    let sent_while_failing = failing.len();
    for (n, a) in failing {
        log.lock().expect("log").record(n, a, "syncs failing");
    }
    let (accepted, refused) = {
        let log = log.lock().expect("log");
        (log.count(202) - 200, log.count(503))
    };
    assert!(
        refused > 0 && router.logs().contains("queue write failed"),
        "syncs failed ({sync_still_fails} still after the burst) but no event was refused \
         ({accepted} got 202); router log:\n{}",
        tail(&router.logs())
    );
    assert!(
        lost_a_write(),
        "the database's syncs never failed in {sent_while_failing} events; router log:\n{}",
        tail(&router.logs())
    );
    // A rebuild needs a small synced write to succeed first, which a full device refuses;
    // this one may still keep a block or two, so a rebuild can win the race.
    let still_degraded = degraded_gauge(&router) == Some(1);

    if let After::PowerCutWhileDegraded = after {
        router.kill_hard();
        std::fs::remove_file(fs.backing.path().join("filler")).expect("remove filler");
        fs.remount();
        router.restart();
        assert!(
            !still_degraded
                || router
                    .logs()
                    .contains("the last run lost a write and did not rebuild it"),
            "the start did not rebuild the database the last run left degraded; router log:\n{}",
            tail(&router.logs())
        );
        if !still_degraded {
            eprintln!("fsync failures: rebuilt before the power cut (the device kept a block)");
        }
        target.set_reply(Reply::default());
    } else {
        // The device works again: ingest recovers by itself (after a quiet second: see
        // `ingest_recovers_under_steady_traffic_once_space_is_freed`), and the database is
        // rebuilt without a restart.
        std::fs::remove_file(fs.backing.path().join("filler")).expect("remove filler");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let recovered_in =
            until_accepted(&url, &log, &next, Duration::from_secs(15), &router).await;
        let rebuilt = eventually(Duration::from_secs(15), || {
            degraded_gauge(&router) == Some(0)
        })
        .await;
        assert!(
            rebuilt && router.logs().contains("queue database rebuilt"),
            "the store did not rebuild its database after the device healed (gauge: {:?}); \
             router log:\n{}",
            degraded_gauge(&router),
            tail(&router.logs())
        );
        eprintln!("fsync failures: ingest recovered {recovered_in:?} after the device healed");
    }
    assert_eq!(degraded_gauge(&router), Some(0), "still degraded");
    for (n, a) in burst(&url, &next, 100).await {
        assert_eq!(
            a.status, 202,
            "event {n} refused after the device recovered: {a:?}"
        );
        log.lock().expect("log").record(n, a, "after recovery");
    }

    if let After::PowerCut = after {
        router.kill_hard();
        fs.remount();
        router.restart();
        target.set_reply(Reply::default());
    }
    all_delivered(
        || seen_ids(&target),
        &log,
        &excused,
        Duration::from_secs(30),
        &router,
    )
    .await;
    eprintln!(
        "fsync failures: while syncs failed {accepted} accepted and {refused} refused; {} \
         acknowledged, all delivered{}",
        log.lock().expect("log").acked.len(),
        match after {
            After::Nothing => String::new(),
            After::PowerCut | After::PowerCutWhileDegraded => format!(
                " after a power cut except {} of the {} accepted while syncs failed (dropped by \
                 the device)",
                lost_by_device(&excused, &seen_ids(&target)),
                excused.len()
            ),
        }
    );
}

/// Syncs fail: 503, the store degrades and rebuilds its database once the device heals,
/// ingest recovers, every 202'd event delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_cannot_sync_gets_503_and_ingest_recovers() {
    fsync_scenario(After::Nothing).await;
}

/// Syncs fail for a while, then a power cut: every 202'd event must still be delivered.
///
/// Two kernel behaviours make this hard. Linux's "fsyncgate": a failed writeback marks the
/// pages clean and reports the error once per open file, so the next sync succeeds although
/// the data never reached the disk. And ext4 leaves the blocks of a failed write marked
/// "unwritten": they read back as zeros even after the same pages are written again and
/// synced without error. A store that kept checkpointing let SQLite start its write-ahead log
/// over the only copy of lost pages: after the power cut the database was malformed, or its
/// journal position named events it no longer held. The store now stops checkpointing and
/// removing journal segments after a failed sync, and rebuilds the database into a new file
/// once the disk works (see `src/queue/embedded.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_failed_syncs_and_a_power_cut() {
    fsync_scenario(After::PowerCut).await;
}

/// Syncs fail, then a power cut before the store could rebuild its database: the start
/// rebuilds it (the degraded state is on disk), and every 202'd event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_while_degraded_loses_no_acknowledged_event() {
    fsync_scenario(After::PowerCutWhileDegraded).await;
}
