//! Accepting connections: a cap on open connections across listeners, TLS with a handshake
//! deadline, HTTP/1.1 and HTTP/2 (by ALPN or preface), and a per-connection watchdog.
//!
//! The watchdog enforces, in one place and the same way for both protocols:
//! - `header_timeout`: once a client starts sending (first byte with no request in progress),
//!   the request head must be complete within it — slow-header clients are cut off;
//! - `idle_timeout`: a connection with no request in progress and no bytes arriving is closed.
//!
//! Body and target deadlines belong to the request (`ingress`, `forward`), so a connection with
//! a request in progress is never cut by the watchdog. hyper's own h1 header timer is off: it
//! also runs while a kept-alive connection is idle, which would merge the two deadlines.
//!
//! On shutdown each connection is asked to finish gracefully (HTTP/1.1 closes after the
//! current response, HTTP/2 sends GOAWAY); the app waits for them up to `drain_timeout`.

pub(crate) mod tls;

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};
use tokio_rustls::TlsAcceptor;

use crate::{
    config::Server,
    ingress::{self, Conn, Shared},
};

/// Upper bound on how late the watchdog notices an expired deadline.
const WATCHDOG_TICK: Duration = Duration::from_secs(1);
/// Most concurrent HTTP/2 streams per connection; webhook senders use a handful.
const H2_MAX_STREAMS: u32 = 128;

/// Everything an accept loop needs.
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    pub(crate) addr: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) shared: Arc<Shared>,
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) limits: Server,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Builds the HTTP server settings from the connection limits.
pub(crate) fn http_builder(limits: &Server) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(limits.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(64));
    b
}

/// Accepts connections until shutdown.
pub(crate) async fn serve(l: Listener) {
    let builder = Arc::new(http_builder(&l.limits));
    let mut shutdown = l.shutdown.clone();
    loop {
        // Waiting for a free slot before accepting leaves excess clients in the kernel backlog.
        let permit = tokio::select! {
            p = l.connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            a = l.socket.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(listener = %l.addr, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let tls = if l.tls {
            let snap = l.shared.snapshot.load();
            snap.tls.get(&l.addr).cloned()
        } else {
            None
        };
        if l.tls && tls.is_none() {
            tracing::error!(listener = %l.addr, "no TLS settings for this listener; closing connection");
            continue;
        }
        let conn = Connection {
            peer,
            shared: l.shared.clone(),
            builder: builder.clone(),
            limits: l.limits.clone(),
            shutdown: l.shutdown.clone(),
            _permit: permit,
        };
        tokio::spawn(conn.run(tcp, tls));
    }
    tracing::debug!(listener = %l.addr, "stopped accepting");
}

struct Connection {
    peer: SocketAddr,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Server,
    shutdown: watch::Receiver<bool>,
    /// Held for the connection's life: the slot in `server.max_connections`.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, tcp: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) {
        let _ = tcp.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        match tls {
            None => {
                self.serve_http(
                    Watched {
                        io: tcp,
                        activity: activity.clone(),
                    },
                    activity,
                    false,
                )
                .await
            }
            Some(cfg) => {
                let handshake = TlsAcceptor::from(cfg).accept(tcp);
                match tokio::time::timeout(self.limits.tls_handshake_timeout, handshake).await {
                    Ok(Ok(stream)) => {
                        self.serve_http(
                            Watched {
                                io: stream,
                                activity: activity.clone(),
                            },
                            activity,
                            true,
                        )
                        .await
                    }
                    Ok(Err(e)) => {
                        crate::metrics::get().tls_handshake_failures.inc();
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => {
                        crate::metrics::get().tls_handshake_failures.inc();
                        tracing::debug!(peer = %self.peer, "TLS handshake timed out")
                    }
                }
            }
        }
    }

    async fn serve_http<IO>(mut self, io: Watched<IO>, activity: Arc<Activity>, tls: bool)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn_info = Arc::new(Conn {
            peer: self.peer,
            tls,
            activity: activity.clone(),
        });
        let shared = self.shared.clone();
        let service =
            service_fn(move |req| ingress::handle(shared.clone(), conn_info.clone(), req));
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            let wait = match activity.deadline(&self.limits) {
                Some(deadline) => {
                    let now = Instant::now();
                    if deadline <= now {
                        tracing::debug!(peer = %self.peer, "closing connection: header or idle timeout");
                        return;
                    }
                    (deadline - now).min(WATCHDOG_TICK)
                }
                None => WATCHDOG_TICK,
            };
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.wait_for(|stop| *stop), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What the watchdog knows about a connection. Times are milliseconds since `epoch`.
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicU32,
    /// When the last request finished (or the connection opened).
    last_done: AtomicU64,
    /// One more than the time the first byte arrived with no request in progress; 0 if none.
    head_started: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_done: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn on_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// Marks a request in progress until the guard is dropped.
    pub(crate) fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// When the connection must be closed if nothing changes; `None` while a request runs.
    fn deadline(&self, limits: &Server) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |ms: u64, d: Duration| self.epoch + Duration::from_millis(ms) + d;
        match self.head_started.load(Ordering::Relaxed) {
            0 => Some(at(
                self.last_done.load(Ordering::Relaxed),
                limits.idle_timeout,
            )),
            started => Some(at(started - 1, limits.header_timeout)),
        }
    }
}

/// Ends a request's claim on its connection.
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_done.store(a.now_ms(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that reports reads to the connection's [`Activity`].
struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
