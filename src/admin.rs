//! The admin listener, on its own address: `/healthz` (the process answers), `/readyz`
//! (listeners are open and the process is not draining) and `/metrics` (Prometheus), which
//! need no token, and the admin
//! API under `/api/v1/` (events, dead letters, replay), which needs the bearer token (see
//! [`api`]).

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::net::TcpListener;

use crate::ingress::Shared;

mod api;

/// Admin requests are small and local; a short head deadline is plenty.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Readiness, flipped by the app.
#[derive(Default)]
pub(crate) struct Health {
    ready: AtomicBool,
}

impl Health {
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// Serves the admin endpoints until the task is aborted: it stays up while the public
/// listeners drain, so probes see `/readyz` fail rather than a refused connection.
pub(crate) async fn serve(socket: TcpListener, health: Arc<Health>, shared: Arc<Shared>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(ADMIN_HEADER_TIMEOUT);
    let builder = Arc::new(builder);
    loop {
        let Ok((tcp, peer)) = socket.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let health = health.clone();
        let shared = shared.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(health.clone(), shared.clone(), peer, req));
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

async fn answer(
    health: Arc<Health>,
    shared: Arc<Shared>,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if api::is_api(req.uri().path()) {
        return Ok(api::answer(&shared, peer, req).await);
    }
    if req.uri().path() == "/metrics" && matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(metrics(&shared).await);
    }
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => {
            if health.ready.load(Ordering::SeqCst) {
                (StatusCode::OK, "ready\n")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (_, "/healthz" | "/readyz" | "/metrics") => {
            (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// `/metrics`: state gauges refreshed, then the registry in the Prometheus text format.
async fn metrics(shared: &Shared) -> Response<Full<Bytes>> {
    let m = crate::metrics::get();
    if let Some(engine) = &shared.delivery {
        engine.observe();
        m.queue_degraded.set(i64::from(engine.queue().degraded()));
        match engine.queue().gauges().await {
            Ok((disk, dead)) => {
                m.queue_disk.set(i64::try_from(disk).unwrap_or(i64::MAX));
                m.dead_letters.reset();
                for target in shared.snapshot.load().config.targets.keys() {
                    m.dead_letters.with_label_values(&[target]).set(0);
                }
                for (target, n) in dead {
                    m.dead_letters
                        .with_label_values(&[&target])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the queue's gauges"),
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from(m.encode())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
