//! store-bench: the embedded store for hookrouter's async mode, chosen by
//! measurement. See README.md for the method. Progress goes to stderr, the
//! Markdown report to stdout.

mod harness;
mod model;
mod stores;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use harness::{AResult, BResult};
use stores::Kind;

struct Args {
    dir: PathBuf,
    duration: f64,
    warmup: f64,
    runs: usize,
    events: u64,
    producers: Vec<usize>,
    stores: Vec<Kind>,
}

const USAGE: &str = "usage: store-bench [--dir PATH] [--duration SECS] [--warmup SECS] \
[--runs N] [--events N] [--producers 1,16,128] [--stores sqlite,redb,fjall,log,sqlite-bgckpt]";

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        dir: std::env::temp_dir(),
        duration: 4.0,
        warmup: 0.5,
        runs: 3,
        events: 100_000,
        producers: vec![1, 16, 128],
        stores: vec![Kind::Sqlite, Kind::Redb, Kind::Fjall, Kind::Log],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let v = it.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--dir" => a.dir = v.into(),
            "--duration" => a.duration = v.parse()?,
            "--warmup" => a.warmup = v.parse()?,
            "--runs" => a.runs = v.parse()?,
            "--events" => a.events = v.parse()?,
            "--producers" => {
                a.producers = v
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--stores" => {
                a.stores = v
                    .split(',')
                    .map(|s| Kind::parse(s).with_context(|| format!("unknown store {s}")))
                    .collect::<anyhow::Result<_>>()?
            }
            _ => anyhow::bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    anyhow::ensure!(a.runs > 0 && a.events > 0 && !a.producers.is_empty());
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

fn mib(b: f64) -> String {
    format!("{:.1}", b / (1024.0 * 1024.0))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);

    // a[store][producers][run], b[store][run]
    let mut a: Vec<Vec<Vec<AResult>>> = args
        .stores
        .iter()
        .map(|_| args.producers.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut b: Vec<Vec<BResult>> = args.stores.iter().map(|_| Vec::new()).collect();

    // Runs are interleaved (run 1 of every store, then run 2, ...) and each
    // run starts with the next store, so drift of the disk (and whatever
    // else the machine does) does not always hit the same store.
    let n = args.stores.len();
    for run in 0..args.runs {
        for si in (0..n).map(|i| (i + run) % n) {
            let kind = args.stores[si];
            for (pi, &p) in args.producers.iter().enumerate() {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("store-bench-{}-", kind.name()))
                    .tempdir_in(&args.dir)?;
                let seed = (run as u64) << 40 | (si as u64) << 20 | p as u64;
                let r = harness::workload_a(kind, dir.path(), p, warmup, duration, seed)
                    .with_context(|| format!("{} A P={p}", kind.name()))?;
                eprintln!(
                    "run {} {:7} A P={p:<3} {:>8.0} ev/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:>6.1} ev/commit  {:>5.0} CPU µs/ev  {:>5.1} KiB written/ev",
                    run + 1,
                    kind.name(),
                    r.events_per_s,
                    r.p50_ms,
                    r.p99_ms,
                    r.avg_batch,
                    r.cpu_us_per_event,
                    r.kib_written_per_event
                );
                a[si][pi].push(r);
            }
            let dir = tempfile::Builder::new()
                .prefix(&format!("store-bench-{}-", kind.name()))
                .tempdir_in(&args.dir)?;
            let r = harness::workload_b(kind, dir.path(), args.events, run as u64)
                .with_context(|| format!("{} B", kind.name()))?;
            eprintln!(
                "run {} {:7} B bulk {:>7.0} ev/s  updates {:>7.0}/s  \
                 {} MiB  purge {:.2} s  {} MiB  compacted {} MiB",
                run + 1,
                kind.name(),
                r.bulk_events_per_s,
                r.updates_per_s,
                mib(r.bytes_loaded as f64),
                r.purge_s,
                mib(r.bytes_purged as f64),
                mib(r.bytes_compacted as f64)
            );
            b[si].push(r);
        }
    }

    println!(
        "Medians of {} runs; A: {} s measured after {} s warm-up per point; B: {} events.\n",
        args.runs, args.duration, args.warmup, args.events
    );
    println!("### Workload A: ingest, reply after a durable group commit\n");
    println!(
        "| store | P | events/s (min–max) | p50 wait ms | p99 wait ms | events/commit | CPU µs/event | KiB written/event |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (si, kind) in args.stores.iter().enumerate() {
        for (pi, p) in args.producers.iter().enumerate() {
            let rs = &a[si][pi];
            let eps: Vec<f64> = rs.iter().map(|r| r.events_per_s).collect();
            let (lo, hi) = spread(&eps);
            println!(
                "| {} | {p} | {:.0} ({lo:.0}–{hi:.0}) | {:.2} | {:.2} | {:.1} | {:.0} | {:.1} |",
                kind.name(),
                median(eps.clone()),
                median(rs.iter().map(|r| r.p50_ms).collect()),
                median(rs.iter().map(|r| r.p99_ms).collect()),
                median(rs.iter().map(|r| r.avg_batch).collect()),
                median(rs.iter().map(|r| r.cpu_us_per_event).collect()),
                median(rs.iter().map(|r| r.kib_written_per_event).collect()),
            );
        }
    }
    println!(
        "\n### Workload B: {} events, their {} deliveries marked delivered, then purge\n",
        args.events,
        3 * args.events
    );
    println!(
        "| store | bulk ingest events/s | delivery updates/s | MiB on disk after B | \
         purge all, s | MiB after purge | MiB after compaction |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (si, kind) in args.stores.iter().enumerate() {
        let rs = &b[si];
        let m = |f: &dyn Fn(&BResult) -> f64| median(rs.iter().map(f).collect());
        println!(
            "| {} | {:.0} | {:.0} | {} | {:.2} | {} | {} |",
            kind.name(),
            m(&|r| r.bulk_events_per_s),
            m(&|r| r.updates_per_s),
            mib(m(&|r| r.bytes_loaded as f64)),
            m(&|r| r.purge_s),
            mib(m(&|r| r.bytes_purged as f64)),
            mib(m(&|r| r.bytes_compacted as f64)),
        );
    }
    Ok(())
}
