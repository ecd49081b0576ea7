//! The group-commit harness, the same for every store: one writer thread
//! owns the store and drains a channel of pending work; everything it
//! drained is committed in one transaction, then every waiter is answered.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::model::{DELIVERED, Event, Gen, Outcome, TARGETS, Update, now_ms};
use crate::stores::{Kind, Store};

/// Most events one ingest commit takes (A never gets there: at most P are
/// pending at once).
const MAX_INGEST_BATCH: usize = 1000;
/// Most delivery updates one commit takes in B.
const MAX_UPDATE_BATCH: usize = 1000;
/// Retention purge: events deleted per transaction.
const PURGE_CHUNK: u64 = 20_000;

type Pending = (Event, oneshot::Sender<Outcome>);

/// Blocks for one item, then takes whatever else is already queued, up to
/// `max`. Returns false once every sender is gone and nothing is left.
fn drain<T>(rx: &Receiver<T>, into: &mut Vec<T>, max: usize) -> bool {
    match rx.recv() {
        Ok(x) => into.push(x),
        Err(_) => return false,
    }
    while into.len() < max {
        match rx.try_recv() {
            Ok(x) => into.push(x),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    true
}

struct WriterStats {
    commits: u64,
    events: u64,
}

/// Ingest writer: commit the drained events durably, then answer each.
fn ingest_writer(
    mut store: Box<dyn Store>,
    rx: Receiver<Pending>,
) -> anyhow::Result<(Box<dyn Store>, WriterStats)> {
    let mut pending: Vec<Pending> = Vec::with_capacity(MAX_INGEST_BATCH);
    let mut events = Vec::with_capacity(MAX_INGEST_BATCH);
    let mut waiters = Vec::with_capacity(MAX_INGEST_BATCH);
    let mut outcomes = Vec::with_capacity(MAX_INGEST_BATCH);
    let mut stats = WriterStats {
        commits: 0,
        events: 0,
    };
    while drain(&rx, &mut pending, MAX_INGEST_BATCH) {
        for (e, w) in pending.drain(..) {
            events.push(e);
            waiters.push(w);
        }
        outcomes.clear();
        store.ingest(&events, &mut outcomes)?;
        stats.commits += 1;
        stats.events += events.len() as u64;
        events.clear();
        for (w, o) in waiters.drain(..).zip(outcomes.iter()) {
            // A producer that stopped waiting is no error.
            let _ = w.send(*o);
        }
    }
    Ok((store, stats))
}

/// CPU time (user + system) this process has used so far, from
/// /proc/self/stat (clock ticks of 10 ms: USER_HZ is 100 on Linux).
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Bytes this process has caused to be written to storage so far
/// (/proc/self/io write_bytes, counted when pages are dirtied).
fn process_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

pub struct AResult {
    pub events_per_s: f64,
    /// Process CPU (writer, producers, the store's own threads) per event
    /// committed, warm-up included.
    pub cpu_us_per_event: f64,
    /// Bytes written to storage per event committed, warm-up included.
    pub kib_written_per_event: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub avg_batch: f64,
}

/// Workload A: `producers` tokio tasks each submit one event at a time and
/// wait for its commit, for `warmup + duration`. Only requests started after
/// the warm-up count.
pub fn workload_a(
    kind: Kind,
    dir: &Path,
    producers: usize,
    warmup: Duration,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<AResult> {
    let store = kind.open(dir)?;
    let cpu0 = process_cpu();
    let written0 = process_write_bytes();
    let (tx, rx) = mpsc::channel::<Pending>();
    let writer = thread::Builder::new()
        .name("writer".into())
        .spawn(move || ingest_writer(store, rx))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let start = Instant::now();
    let warm = start + warmup;
    let end = warm + duration;
    let per_task = rt.block_on(async {
        let mut tasks = Vec::with_capacity(producers);
        for p in 0..producers {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                // 1% of events repeat the previous dedup key.
                let mut generator = Gen::new(seed ^ ((p as u64) << 32), 10);
                let mut lat_ns: Vec<u64> = Vec::with_capacity(1 << 14);
                let mut last_done = warm;
                while Instant::now() < end {
                    let ev = generator.event();
                    let (otx, orx) = oneshot::channel();
                    let t0 = Instant::now();
                    if tx.send((ev, otx)).is_err() {
                        break;
                    }
                    if orx.await.is_err() {
                        break;
                    }
                    let t1 = Instant::now();
                    if t0 >= warm {
                        lat_ns.push((t1 - t0).as_nanos() as u64);
                        last_done = last_done.max(t1);
                    }
                }
                (lat_ns, last_done)
            }));
        }
        let mut out = Vec::with_capacity(producers);
        for t in tasks {
            out.push(t.await);
        }
        out
    });
    drop(tx);
    let (store, stats) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    rt.shutdown_timeout(Duration::from_secs(1));
    let cpu = process_cpu().saturating_sub(cpu0);
    let written = process_write_bytes().saturating_sub(written0);
    drop(store);

    let mut lat: Vec<u64> = Vec::new();
    let mut last = warm;
    for r in per_task {
        let (l, d) = r?;
        lat.extend(l);
        last = last.max(d);
    }
    anyhow::ensure!(!lat.is_empty(), "no request completed in the window");
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1e6;
    Ok(AResult {
        events_per_s: lat.len() as f64 / (last - warm).as_secs_f64(),
        cpu_us_per_event: cpu.as_secs_f64() * 1e6 / stats.events.max(1) as f64,
        kib_written_per_event: written as f64 / 1024.0 / stats.events.max(1) as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        avg_batch: stats.events as f64 / stats.commits.max(1) as f64,
    })
}

pub struct BResult {
    pub bulk_events_per_s: f64,
    pub updates_per_s: f64,
    pub bytes_loaded: u64,
    pub purge_s: f64,
    pub bytes_purged: u64,
    pub bytes_compacted: u64,
}

/// Runs `produce` on its own thread, feeding a bounded channel, while the
/// writer (this thread) commits whatever is queued, up to `max` per commit.
fn pipeline<T: Send + 'static>(
    store: &mut dyn Store,
    max: usize,
    produce: impl FnOnce(mpsc::SyncSender<T>) + Send + 'static,
    mut commit: impl FnMut(&mut dyn Store, &mut Vec<T>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::sync_channel::<T>(8 * max);
    let producer = thread::spawn(move || produce(tx));
    let mut batch = Vec::with_capacity(max);
    while drain(&rx, &mut batch, max) {
        commit(store, &mut batch)?;
        batch.clear();
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("producer panicked"))?;
    Ok(())
}

/// "Delivered" for each of the 3 deliveries of events 1..=n, in order.
fn updates(n: u64) -> impl FnOnce(mpsc::SyncSender<Update>) {
    move |tx| {
        for seq in 1..=n {
            for target in 0..TARGETS.len() {
                let u = Update {
                    seq,
                    target,
                    state: DELIVERED,
                    at: now_ms(),
                    next_at: 0,
                    status: 200,
                };
                if tx.send(u).is_err() {
                    return;
                }
            }
        }
    }
}

/// Workload B on a fresh store: bulk-ingest `n` events (writer batches of up
/// to 1000, each commit durable, as in A), then mark all 3n deliveries
/// delivered (delivery row + attempt row each) in writer batches of up to
/// 1000 whose commits nobody waits on: committed, not synced (one sync at
/// the end, inside the timing). Then size on disk, retention purge of
/// everything (20k events per durable transaction), size, the store's
/// compaction, size.
pub fn workload_b(kind: Kind, dir: &Path, n: u64, seed: u64) -> anyhow::Result<BResult> {
    let mut store = kind.open(dir)?;

    let t = Instant::now();
    let mut stored = 0u64;
    let mut outcomes = Vec::with_capacity(MAX_INGEST_BATCH);
    pipeline(
        store.as_mut(),
        MAX_INGEST_BATCH,
        move |tx| {
            let mut generator = Gen::new(seed, 0);
            for _ in 0..n {
                if tx.send(generator.event()).is_err() {
                    return;
                }
            }
        },
        |s, batch| {
            outcomes.clear();
            s.ingest(batch, &mut outcomes)?;
            // The updates below address events by seq: 1..=n, in order.
            for o in &outcomes {
                if let Outcome::Stored(seq) = o {
                    stored += 1;
                    anyhow::ensure!(*seq == stored, "seq {seq}, expected {stored}");
                }
            }
            Ok(())
        },
    )?;
    let bulk_events_per_s = n as f64 / t.elapsed().as_secs_f64();
    anyhow::ensure!(stored == n, "stored {stored} of {n} events");

    let t = Instant::now();
    pipeline(
        store.as_mut(),
        MAX_UPDATE_BATCH,
        updates(n),
        |s, batch| s.update(batch, false),
    )?;
    store.sync()?;
    let updates_per_s = (3 * n) as f64 / t.elapsed().as_secs_f64();
    let bytes_loaded = disk_usage(dir)?;

    let t = Instant::now();
    let mut upto = 1;
    while upto <= n {
        upto = (upto + PURGE_CHUNK).min(n + 1);
        store.purge(upto)?;
    }
    let purge_s = t.elapsed().as_secs_f64();
    let bytes_purged = disk_usage(dir)?;
    store.compact()?;
    let bytes_compacted = disk_usage(dir)?;
    drop(store);
    Ok(BResult {
        bulk_events_per_s,
        updates_per_s,
        bytes_loaded,
        purge_s,
        bytes_purged,
        bytes_compacted,
    })
}

/// Space allocated on disk (st_blocks), not the apparent length: what
/// `du` says.
pub fn disk_usage(path: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.blocks() * 512);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += disk_usage(&entry?.path())?;
    }
    Ok(total)
}
