//! Constant-rate HTTP/1.1 load generator for bench/async.sh.
//!
//! Request `i` is *scheduled* at `start + i / rate`. `--connections` threads, each with one
//! keep-alive connection, claim the schedule's slots in order; a thread sleeps until its slot's
//! time, sends, and waits for the whole answer. Latency is measured from the **scheduled** time
//! to the end of the answer (as wrk2 does), so a stall in the server is charged to every request
//! that should have been sent during it: no coordinated omission. When every connection is busy
//! the next slot is sent late, and that lateness is part of its latency.
//!
//! Every request carries a fresh body: the payload with a new event id (which also records the
//! scheduled send time, see `loadgen_id`), signed for the chosen scheme.
//!
//! Usage:
//!   loadgen --url http://127.0.0.1:18081/hook [--url …] --rate 5000 --duration 20
//!           --payload bench/payload.json --tag l01 [--scheme stripe|hub|none] [--secret S]
//!           [--stripe-t UNIX] [--connections 64] [--expect 202] [--timeout 2]
//!
//! With several `--url`s the connections are spread over them round-robin. Prints `PROGRESS`
//! lines every 100 ms and one `RESULT {json}` line at the end (stdout). Exit 0 when it ran
//! (errors are in the result), 2 on a usage error.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    process::exit,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hookrouter_async_bench::{Payload, hub_signature, loadgen_id, stripe_signature};

#[derive(Clone, Copy, PartialEq)]
enum Scheme {
    Stripe,
    Hub,
    None,
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

struct Args {
    targets: Vec<Target>,
    rate: f64,
    duration: f64,
    connections: usize,
    scheme: Scheme,
    secret: String,
    stripe_t: u64,
    payload: String,
    tag: String,
    expect: Vec<u16>,
    timeout: Duration,
}

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!(
        "usage: loadgen --url URL [--url URL…] --rate R --duration S --payload FILE --tag lXX \
         [--scheme stripe|hub|none] [--secret S] [--stripe-t UNIX] [--connections N] \
         [--expect CODE[,CODE]] [--timeout S]"
    );
    exit(2)
}

fn parse_url(url: &str) -> Target {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| usage("only http:// URLs"));
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| usage(&format!("cannot resolve {hostport}")));
    if !addr.ip().is_loopback() {
        usage("only loopback addresses (this is a local benchmark)");
    }
    Target {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
    }
}

fn parse_args() -> Args {
    let mut a = Args {
        targets: Vec::new(),
        rate: 0.0,
        duration: 0.0,
        connections: 64,
        scheme: Scheme::None,
        secret: String::new(),
        stripe_t: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        payload: String::new(),
        tag: String::new(),
        expect: vec![200, 202],
        timeout: Duration::from_secs(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{k} needs a value")))
        };
        match k.as_str() {
            "--url" => a.targets.push(parse_url(&v())),
            "--rate" => a.rate = v().parse().unwrap_or_else(|_| usage("bad --rate")),
            "--duration" => a.duration = v().parse().unwrap_or_else(|_| usage("bad --duration")),
            "--connections" => {
                a.connections = v().parse().unwrap_or_else(|_| usage("bad --connections"))
            }
            "--scheme" => {
                a.scheme = match v().as_str() {
                    "stripe" => Scheme::Stripe,
                    "hub" => Scheme::Hub,
                    "none" => Scheme::None,
                    _ => usage("--scheme is stripe, hub or none"),
                }
            }
            "--secret" => a.secret = v(),
            "--stripe-t" => a.stripe_t = v().parse().unwrap_or_else(|_| usage("bad --stripe-t")),
            "--payload" => a.payload = v(),
            "--tag" => a.tag = v(),
            "--expect" => {
                a.expect = v()
                    .split(',')
                    .map(|c| c.parse().unwrap_or_else(|_| usage("bad --expect")))
                    .collect()
            }
            "--timeout" => {
                a.timeout =
                    Duration::from_secs_f64(v().parse().unwrap_or_else(|_| usage("bad --timeout")))
            }
            _ => usage(&format!("unknown argument {k}")),
        }
    }
    if a.targets.is_empty() || a.rate <= 0.0 || a.duration <= 0.0 || a.payload.is_empty() {
        usage("--url, --rate, --duration and --payload are required");
    }
    if a.tag.len() != 3 || !a.tag.starts_with('l') {
        usage("--tag is 3 characters starting with l (it makes the event ids unique per run)");
    }
    if a.connections == 0 {
        usage("--connections must be at least 1");
    }
    if a.scheme != Scheme::None && a.secret.is_empty() {
        usage("--secret is required with --scheme stripe or hub");
    }
    a
}

/// One keep-alive connection.
struct Conn {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    connects: u64,
}

enum Failure {
    Connect,
    Io,
    Timeout,
}

impl Conn {
    fn stream(&mut self) -> Result<&mut TcpStream, Failure> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)
                .map_err(|_| Failure::Connect)?;
            s.set_nodelay(true).map_err(|_| Failure::Connect)?;
            s.set_read_timeout(Some(self.timeout))
                .map_err(|_| Failure::Connect)?;
            s.set_write_timeout(Some(self.timeout))
                .map_err(|_| Failure::Connect)?;
            self.connects += 1;
            self.stream = Some(s);
        }
        Ok(self.stream.as_mut().unwrap())
    }

    /// Sends one request and reads the whole answer; returns its status.
    fn exchange(&mut self, request: &[u8]) -> Result<u16, Failure> {
        let r = self.try_exchange(request);
        if !matches!(r, Ok((_, true))) {
            self.stream = None; // error, or the server will close: reconnect next time
        }
        r.map(|(status, _)| status)
    }

    fn try_exchange(&mut self, request: &[u8]) -> Result<(u16, bool), Failure> {
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Io,
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut chunk = [0u8; 4096];
        let stream = self.stream()?;
        stream.write_all(request).map_err(io)?;
        let result = (|| {
            let head_end = loop {
                let n = stream.read(&mut chunk).map_err(io)?;
                if n == 0 {
                    return Err(Failure::Io);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if buf.len() > 64 << 10 {
                    return Err(Failure::Io);
                }
            };
            let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| Failure::Io)?;
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or("");
            let status: u16 = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or(Failure::Io)?;
            let mut length = None;
            let mut keep = status_line.starts_with("HTTP/1.1");
            for line in lines {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("connection") {
                    keep = !value.eq_ignore_ascii_case("close");
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(Failure::Io); // no answer in this benchmark is chunked
                }
            }
            let length = length.unwrap_or(0);
            while buf.len() < head_end + length {
                let n = stream.read(&mut chunk).map_err(io)?;
                if n == 0 {
                    return Err(Failure::Io);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok((status, keep))
        })();
        self.buf = buf;
        result
    }
}

#[derive(Default)]
struct Stats {
    /// scheduled time → answer complete, µs
    lat: Vec<u32>,
    /// actual send → answer complete, µs
    service: Vec<u32>,
    /// scheduled time → actual send, µs
    lag: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    err_connect: u64,
    err_io: u64,
    err_timeout: u64,
    connects: u64,
    last_done: Option<Instant>,
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args = Arc::new(parse_args());
    let payload = Arc::new(Payload::load(&args.payload).unwrap_or_else(|e| usage(&e)));
    let total = (args.rate * args.duration).round() as u64;
    let interval_ns = 1e9 / args.rate;
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    // Give the threads time to start before the first slot.
    let start = Instant::now() + Duration::from_millis(50);
    let start_unix_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
        + 50_000;

    let mut handles = Vec::new();
    for c in 0..args.connections {
        let (args, payload, next, ok, done) = (
            args.clone(),
            payload.clone(),
            next.clone(),
            ok.clone(),
            done.clone(),
        );
        handles.push(thread::spawn(move || {
            let target = &args.targets[c % args.targets.len()];
            let mut conn = Conn {
                addr: target.addr,
                timeout: args.timeout,
                stream: None,
                buf: Vec::with_capacity(8192),
                connects: 0,
            };
            let mut st = Stats::default();
            let mut body = Vec::with_capacity(payload.len());
            let mut request = Vec::with_capacity(payload.len() + 512);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let offset = Duration::from_nanos((i as f64 * interval_ns) as u64);
                let due = start + offset;
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                let id = loadgen_id(&args.tag, start_unix_us + offset.as_micros() as u64, i);
                body.clear();
                payload.write_with_id(&id, &mut body);
                request.clear();
                write!(
                    request,
                    "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                     User-Agent: hookrouter-bench-loadgen\r\nContent-Length: {}\r\n",
                    target.path,
                    target.host,
                    body.len()
                )
                .unwrap();
                match args.scheme {
                    Scheme::Stripe => {
                        let sig = stripe_signature(args.secret.as_bytes(), args.stripe_t, &body);
                        write!(request, "Stripe-Signature: {sig}\r\n").unwrap();
                    }
                    Scheme::Hub => {
                        let sig = hub_signature(args.secret.as_bytes(), &body);
                        write!(request, "X-Hub-Signature-256: {sig}\r\n").unwrap();
                    }
                    Scheme::None => {}
                }
                request.extend_from_slice(b"\r\n");
                request.extend_from_slice(&body);
                let sent = Instant::now();
                let r = conn.exchange(&request);
                let end = Instant::now();
                st.last_done = Some(end);
                done.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(status) => {
                        *st.statuses.entry(status).or_default() += 1;
                        if args.expect.contains(&status) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(Failure::Connect) => st.err_connect += 1,
                    Err(Failure::Io) => st.err_io += 1,
                    Err(Failure::Timeout) => st.err_timeout += 1,
                }
                let us = |d: Duration| d.as_micros().min(u32::MAX as u128) as u32;
                st.lat.push(us(end.saturating_duration_since(due)));
                st.service.push(us(end - sent));
                st.lag.push(us(sent.saturating_duration_since(due)));
            }
            st.connects = conn.connects;
            st
        }));
    }

    {
        let (ok, done, finished) = (ok.clone(), done.clone(), finished.clone());
        thread::spawn(move || {
            // Every 100 ms, so that a once-a-second sampler reads a count at most 0.1 s old.
            let mut t = 1u64;
            while !finished.load(Ordering::Relaxed) {
                let at = start + Duration::from_millis(100 * t);
                let now = Instant::now();
                if at > now {
                    thread::sleep(at - now);
                }
                if finished.load(Ordering::Relaxed) {
                    break;
                }
                println!(
                    "PROGRESS t={:.1} done={} ok={}",
                    t as f64 / 10.0,
                    done.load(Ordering::Relaxed),
                    ok.load(Ordering::Relaxed)
                );
                t += 1;
            }
        });
    }

    let mut all = Stats::default();
    for h in handles {
        let st = h.join().expect("worker panicked");
        all.lat.extend(st.lat);
        all.service.extend(st.service);
        all.lag.extend(st.lag);
        for (k, v) in st.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
        all.err_connect += st.err_connect;
        all.err_io += st.err_io;
        all.err_timeout += st.err_timeout;
        all.connects += st.connects;
        all.last_done = all.last_done.max(st.last_done);
    }
    finished.store(true, Ordering::Relaxed);
    let elapsed = all
        .last_done
        .map_or(0.0, |t| t.saturating_duration_since(start).as_secs_f64());
    all.lat.sort_unstable();
    all.service.sort_unstable();
    all.lag.sort_unstable();
    let statuses: Vec<String> = all
        .statuses
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    println!(
        "RESULT {{\"scheduled\":{total},\"completed\":{},\"ok\":{},\"elapsed_s\":{elapsed:.3},\
         \"rate\":{},\"achieved_rate\":{:.1},\"connections\":{},\"connects\":{},\
         \"err_connect\":{},\"err_io\":{},\"err_timeout\":{},\"statuses\":{{{}}},\
         \"lat_p50_us\":{},\"lat_p90_us\":{},\"lat_p99_us\":{},\"lat_p999_us\":{},\"lat_max_us\":{},\
         \"service_p50_us\":{},\"service_p99_us\":{},\"service_p999_us\":{},\
         \"lag_p50_us\":{},\"lag_p99_us\":{},\"lag_max_us\":{}}}",
        all.lat.len(),
        ok.load(Ordering::Relaxed),
        args.rate,
        if elapsed > 0.0 {
            all.lat.len() as f64 / elapsed
        } else {
            0.0
        },
        args.connections,
        all.connects,
        all.err_connect,
        all.err_io,
        all.err_timeout,
        statuses.join(","),
        pct(&all.lat, 50.0),
        pct(&all.lat, 90.0),
        pct(&all.lat, 99.0),
        pct(&all.lat, 99.9),
        all.lat.last().copied().unwrap_or(0),
        pct(&all.service, 50.0),
        pct(&all.service, 99.0),
        pct(&all.service, 99.9),
        pct(&all.lag, 50.0),
        pct(&all.lag, 99.0),
        all.lag.last().copied().unwrap_or(0),
    );
}
