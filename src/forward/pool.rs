//! Kept-alive HTTP/1.1 connections to targets, over TCP or TLS.
//!
//! Idle connections are reused newest first (the likeliest to still be open) and dropped after
//! `IDLE_TIMEOUT`. A request that a reused connection refuses before writing anything (the
//! target closed it while idle) is retried on the next one, so an idle close never loses or
//! doubles a request; once any byte has been written, the error is the caller's.
//!
//! Why not hyper-util's pooled client: this router sends to a handful of fixed targets, so a
//! list scan replaces the generic keyed pool, and measured per-request cost dropped noticeably
//! (see bench/README.md).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, Uri, uri::Authority};
use http_body_util::Full;
use hyper::{body::Incoming, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::{net::TcpStream, time::Instant};

/// Idle connections are closed after this; below common server keep-alive timeouts
/// (nginx 75 s) so the target rarely closes one under us.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle connections kept per target.
const MAX_IDLE_PER_TARGET: usize = 512;

/// Why a request did not get an answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made (refused, unresolvable, TLS failed).
    Connect(std::io::Error),
    /// The exchange failed after the connection was made.
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Http(e) => write!(f, "http: {e}"),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
struct Key {
    https: bool,
    authority: Authority,
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// A connection lent out for one exchange; give it back with [`Pool::put`] once the answer
/// has been read in full.
pub(crate) struct Lease {
    key: Key,
    sender: SendRequest<Full<Bytes>>,
}

/// How often idle connections past `IDLE_TIMEOUT` are swept out.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The connections to every target.
pub(crate) struct Pool {
    idle: Mutex<IdleList>,
    tls: tokio_rustls::TlsConnector,
}

/// Idle connections per target, and when they were last swept.
struct IdleList {
    by_target: Vec<(Key, Vec<Idle>)>,
    swept: Instant,
}

impl Pool {
    /// A pool whose TLS connections trust `roots`.
    pub(crate) fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Pool {
            idle: Mutex::new(IdleList {
                by_target: Vec::new(),
                swept: Instant::now(),
            }),
            tls: tokio_rustls::TlsConnector::from(tls),
        }
    }

    /// Sends `req` to the target at `uri` (absolute `http` or `https`).
    pub(crate) async fn send(
        &self,
        uri: &Uri,
        mut req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let key = key(uri)?;
        while let Some(mut sender) = self.checkout(&key) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease { key, sender })),
                Err(mut e) => match e.take_message() {
                    // Not written: the connection was closing. Try the next one.
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        let mut sender = self.connect(&key).await?;
        let resp = sender.send_request(req).await.map_err(SendError::Http)?;
        Ok((resp, Lease { key, sender }))
    }

    /// Returns a connection whose answer was read in full.
    pub(crate) fn put(&self, lease: Lease) {
        if lease.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let Ok(mut guard) = self.idle.lock() else {
            return;
        };
        let idle = &mut *guard;
        if now.duration_since(idle.swept) >= SWEEP_INTERVAL {
            idle.swept = now;
            for (_, list) in &mut idle.by_target {
                list.retain(|i| {
                    now.duration_since(i.since) < IDLE_TIMEOUT && !i.sender.is_closed()
                });
            }
        }
        let targets = &mut idle.by_target;
        let list = match targets.iter().position(|(k, _)| *k == lease.key) {
            Some(i) => &mut targets[i].1,
            None => {
                targets.push((lease.key.clone(), Vec::new()));
                let last = targets.len() - 1;
                &mut targets[last].1
            }
        };
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push(Idle {
                sender: lease.sender,
                since: now,
            });
        }
    }

    fn checkout(&self, key: &Key) -> Option<SendRequest<Full<Bytes>>> {
        let now = Instant::now();
        let mut idle = self.idle.lock().ok()?;
        let list = &mut idle.by_target.iter_mut().find(|(k, _)| k == key)?.1;
        while let Some(i) = list.pop() {
            if now.duration_since(i.since) < IDLE_TIMEOUT && !i.sender.is_closed() {
                return Some(i.sender);
            }
        }
        None
    }

    async fn connect(&self, key: &Key) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let host = key
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = key
            .authority
            .port_u16()
            .unwrap_or(if key.https { 443 } else { 80 });
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(SendError::Connect)?;
        let _ = tcp.set_nodelay(true);
        if key.https {
            let name = ServerName::try_from(host.to_string()).map_err(|e| {
                SendError::Connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
            })?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(SendError::Connect)?;
            handshake(TokioIo::new(tls)).await
        } else {
            handshake(TokioIo::new(tcp)).await
        }
    }
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<Full<Bytes>>, SendError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "target connection closed with an error");
        }
    });
    Ok(sender)
}

fn key(uri: &Uri) -> Result<Key, SendError> {
    let invalid = || {
        SendError::Connect(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "target URL has no host",
        ))
    };
    let authority = uri.authority().cloned().ok_or_else(invalid)?;
    Ok(Key {
        https: uri.scheme_str() == Some("https"),
        authority,
    })
}

/// TLS settings for `https://` targets: the system's root certificates, HTTP/1.1.
pub(crate) fn client_tls() -> std::io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "could not read some root certificates for https targets");
    }
    // A single unparsable system certificate must not disable all the others.
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "root certificates for https targets");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
