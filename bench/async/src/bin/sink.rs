//! The delivery targets of bench/async.sh: one process, one thread, several ports.
//!
//! Every `POST` on a target port is answered `200 {"ok":true}` once its whole body has been
//! read, and counted for that port: requests, distinct event ids (the body's top-level `"id"`),
//! and, for events made by `loadgen`, the time from the request's scheduled send to its
//! arrival here (the id carries it).
//!
//! Usage:  sink --control 127.0.0.1:18100 --listen 127.0.0.1:18101 [--listen …]
//!
//! Control port: `GET /stats` → `{"targets":[{"port","requests","unique","bytes"}…]}`;
//! `GET /stats?lat=1` adds `e2e_p50_us`, `e2e_p99_us`, `e2e_max_us`, `e2e_n` per target;
//! `POST /reset` forgets everything.

use std::{
    collections::HashSet,
    convert::Infallible,
    net::SocketAddr,
    process::exit,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hookrouter_async_bench::{event_id, sched_time_of};
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Default)]
struct Counter {
    port: u16,
    requests: u64,
    bytes: u64,
    ids: HashSet<[u8; 32]>,
    e2e_us: Vec<u32>,
}

type State = Arc<Mutex<Vec<Counter>>>;

fn usage(msg: &str) -> ! {
    eprintln!("sink: {msg}\nusage: sink --control ADDR --listen ADDR [--listen ADDR…]");
    exit(2)
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn target(
    state: State,
    idx: usize,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let post = req.method() == Method::POST;
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(json(StatusCode::BAD_REQUEST, "{}".into())),
    };
    if post {
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        let mut all = state.lock().unwrap();
        let c = &mut all[idx];
        c.requests += 1;
        c.bytes += body.len() as u64;
        if let Some(id) = event_id(&body) {
            let mut key = [0u8; 32];
            let n = id.len().min(32);
            key[..n].copy_from_slice(&id[..n]);
            if c.ids.insert(key)
                && let Some(t) = sched_time_of(id)
            {
                c.e2e_us
                    .push(now_us.saturating_sub(t).min(u32::MAX as u64) as u32);
            }
        }
    }
    Ok(json(StatusCode::OK, "{\"ok\":true}".into()))
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn control(
    state: State,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let lat = req.uri().query().is_some_and(|q| q.contains("lat=1"));
    let answer = match (req.method(), req.uri().path()) {
        (&Method::GET, "/stats") => {
            let mut all = state.lock().unwrap();
            let parts: Vec<String> = all
                .iter_mut()
                .map(|c| {
                    let mut s = format!(
                        "{{\"port\":{},\"requests\":{},\"unique\":{},\"bytes\":{}",
                        c.port,
                        c.requests,
                        c.ids.len(),
                        c.bytes
                    );
                    if lat {
                        c.e2e_us.sort_unstable();
                        s += &format!(
                            ",\"e2e_n\":{},\"e2e_p50_us\":{},\"e2e_p99_us\":{},\"e2e_max_us\":{}",
                            c.e2e_us.len(),
                            pct(&c.e2e_us, 50.0),
                            pct(&c.e2e_us, 99.0),
                            c.e2e_us.last().copied().unwrap_or(0)
                        );
                    }
                    s + "}"
                })
                .collect();
            json(
                StatusCode::OK,
                format!("{{\"targets\":[{}]}}", parts.join(",")),
            )
        }
        (&Method::POST, "/reset") => {
            for c in state.lock().unwrap().iter_mut() {
                let port = c.port;
                *c = Counter {
                    port,
                    ..Counter::default()
                };
            }
            json(StatusCode::OK, "{\"reset\":true}".into())
        }
        _ => json(StatusCode::NOT_FOUND, "{}".into()),
    };
    Ok(answer)
}

async fn serve(listener: TcpListener, state: State, idx: Option<usize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move {
                    match idx {
                        Some(i) => target(state, i, req).await,
                        None => control(state, req).await,
                    }
                }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() {
    let mut control_addr: Option<SocketAddr> = None;
    let mut listen: Vec<SocketAddr> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{k} needs a value")));
        let addr: SocketAddr = v
            .parse()
            .unwrap_or_else(|_| usage(&format!("bad address {v}")));
        if !addr.ip().is_loopback() {
            usage("loopback addresses only");
        }
        match k.as_str() {
            "--control" => control_addr = Some(addr),
            "--listen" => listen.push(addr),
            _ => usage(&format!("unknown argument {k}")),
        }
    }
    let Some(control_addr) = control_addr else {
        usage("--control is required")
    };
    if listen.is_empty() {
        usage("at least one --listen");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let state: State = Arc::new(Mutex::new(
            listen
                .iter()
                .map(|a| Counter {
                    port: a.port(),
                    ..Counter::default()
                })
                .collect(),
        ));
        for (i, addr) in listen.iter().enumerate() {
            let l = TcpListener::bind(addr)
                .await
                .unwrap_or_else(|e| usage(&format!("{addr}: {e}")));
            tokio::spawn(serve(l, state.clone(), Some(i)));
        }
        let l = TcpListener::bind(control_addr)
            .await
            .unwrap_or_else(|e| usage(&format!("{control_addr}: {e}")));
        eprintln!("sink: control {control_addr}, targets {listen:?}");
        serve(l, state, None).await;
    });
}
