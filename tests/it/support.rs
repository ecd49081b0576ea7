//! Test harness: the real `hookrouter` binary on 127.0.0.1 with a config written per test,
//! recording HTTP targets, certificates generated per test, and small HTTP/TLS clients.

#![allow(dead_code)]

use std::{
    convert::Infallible,
    io::{Read, Write},
    net::{SocketAddr, TcpListener as StdListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

// === Router process ===

/// A running router process with its config in a temporary folder.
pub struct Router {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
    pub admin_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Router {
    /// Writes `yaml` (with `{port}`, `{admin}` and `{dir}` filled in) and starts the router,
    /// waiting until `/readyz` answers.
    pub fn start(yaml: &str) -> Router {
        Self::start_in(tempfile::tempdir().expect("tempdir"), yaml)
    }

    /// Like `start`, in a prepared folder (certificates already written).
    pub fn start_in(dir: tempfile::TempDir, yaml: &str) -> Router {
        Self::start_with_env(dir, yaml, &[])
    }

    /// Like `start_in`, with extra environment variables for the router process.
    pub fn start_with_env(dir: tempfile::TempDir, yaml: &str, env: &[(&str, String)]) -> Router {
        Self::start_on(dir, yaml, env, free_port(), free_port())
    }

    /// Like `start_with_env`, on ports chosen by the caller (who may pass them in `env` so
    /// that several routers run byte-identical config files).
    pub fn start_on(
        dir: tempfile::TempDir,
        yaml: &str,
        env: &[(&str, String)],
        port: u16,
        admin_port: u16,
    ) -> Router {
        let config = dir.path().join("router.yaml");
        let text = fill(yaml, port, admin_port, dir.path());
        std::fs::write(&config, text).expect("write config");
        let log = dir.path().join("router.log");
        let mut r = Router {
            dir,
            config,
            port,
            admin_port,
            child: None,
            log,
        };
        r.spawn(env);
        r
    }

    fn spawn(&mut self, env: &[(&str, String)]) {
        // Append, so a restarted process's log follows the earlier one.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hookrouter"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(["run", "-c"])
            .arg(&self.config)
            .args(["--log-level", "debug"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start hookrouter");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("router exited early with {status}; log:\n{}", self.logs());
            }
            if blocking_get(self.admin_port, "/readyz").is_some_and(|(s, _)| s == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "router not ready; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Replaces the config file (placeholders filled in as at start).
    pub fn write_config(&self, yaml: &str) {
        let text = fill(yaml, self.port, self.admin_port, self.dir.path());
        // Write then rename, as editors and config management do.
        let tmp = self.dir.path().join("router.yaml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGKILL, then wait for the process to be gone (no drain, no cleanup: a crash).
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again with the same config and folder (after `kill_hard` or exit).
    pub fn restart(&mut self) {
        self.kill_hard();
        self.spawn(&[]);
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Counts log lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.logs().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn fill(yaml: &str, port: u16, admin: u16, dir: &Path) -> String {
    yaml.replace("{port}", &port.to_string())
        .replace("{admin}", &admin.to_string())
        .replace("{dir}", &dir.display().to_string())
}

/// A GET over a plain std socket (no runtime needed): status and body.
pub fn blocking_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

// === Recording target ===

/// A request as the target saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

/// How the target answers.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: &'static str,
    pub delay: Duration,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            status: 200,
            headers: vec![],
            body: "ok",
            delay: Duration::ZERO,
        }
    }
}

/// An HTTP target on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<Reply>>,
}

impl Target {
    pub async fn start(reply: Reply) -> Target {
        Self::start_tls(reply, None).await
    }

    /// A target that speaks TLS with `tls` (cert PEM, key PEM) when given.
    pub async fn start_tls(reply: Reply, tls: Option<(&str, &str)>) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().expect("addr");
        let t = Target {
            addr,
            seen: Arc::default(),
            reply: Arc::new(Mutex::new(reply)),
        };
        let acceptor = tls.map(|(cert, key)| {
            use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("cert");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
            tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
        });
        let tt = t.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let tt = tt.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let tt = tt.clone();
                        async move { Ok::<_, Infallible>(tt.answer(req).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        t
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.seen.lock().expect("lock").push(Seen {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers,
            body,
            version: parts.version,
        });
        let reply = self.reply.lock().expect("lock").clone();
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let mut resp = Response::new(Full::new(Bytes::from_static(reply.body.as_bytes())));
        *resp.status_mut() = StatusCode::from_u16(reply.status).expect("status");
        for (k, v) in reply.headers {
            resp.headers_mut().append(k, v.parse().expect("header"));
        }
        resp
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.reply.lock().expect("lock") = reply;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// Every request seen so far.
    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("target saw a request")
    }
}

// === Clients ===

/// A pooled plain-HTTP client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The answer to a request: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends a request and reads the whole answer.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from_static(body)))
        .expect("request");
    let resp = client.request(req).await.expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// Sends a request with an owned body and reads the whole answer.
pub async fn send_bytes(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Answer {
    let mut req = Request::builder().method("POST").uri(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = client.request(req).await.expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passes; whether it held.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POST with a JSON body.
pub async fn post(url: &str, body: &'static [u8]) -> Answer {
    send(
        &client(),
        "POST",
        url,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// Sends raw bytes on a new connection and returns everything read until the server closes
/// or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw answer.
pub fn raw_status(answer: &str) -> Option<u16> {
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

// === Certificates ===

/// A test certificate authority.
pub struct Ca {
    pub der: rustls::pki_types::CertificateDer<'static>,
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    pub fn new() -> Ca {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hookrouter test CA");
        let cert = params.self_signed(&key).expect("ca cert");
        let pem = cert.pem();
        Ca {
            der: cert.der().clone(),
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// An ECDSA P-256 leaf for `names`: (cert PEM, key PEM, cert DER).
    pub fn leaf(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        self.sign_leaf(names, key)
    }

    /// An RSA-2048 leaf for `names`, the key made by `openssl`.
    pub fn rsa_leaf(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl genpkey (install the Debian package openssl)");
        assert!(out.status.success(), "openssl genpkey failed");
        let pem = String::from_utf8(out.stdout).expect("pem");
        let key = rcgen::KeyPair::from_pem(&pem).expect("rsa key");
        self.sign_leaf(names, key)
    }

    fn sign_leaf(&self, names: &[&str], key: rcgen::KeyPair) -> (String, String, Vec<u8>) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// A rustls client config trusting this CA, offering `alpn`, limited to `versions`.
    pub fn client_config(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// Writes `pem` to `dir/name`.
pub fn write(dir: &Path, name: &str, pem: &str) {
    std::fs::write(dir.join(name), pem).expect("write pem");
}

/// What a TLS request saw.
pub struct TlsAnswer {
    pub status: u16,
    pub body: Bytes,
    pub alpn: Option<Vec<u8>>,
    pub version: rustls::ProtocolVersion,
    pub peer_cert: Vec<u8>,
}

/// Connects with TLS (SNI = `server_name`), sends one POST over the negotiated protocol.
pub async fn tls_post(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    body: &'static [u8],
) -> Result<TlsAnswer, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = stream.get_ref();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let version = conn.protocol_version().ok_or("no version")?;
    let peer_cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or("no cert")?;
    let io = TokioIo::new(stream);
    let req = Request::builder()
        .method("POST")
        .uri(format!("https://{server_name}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body)))
        .map_err(|e| e.to_string())?;
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut()
            .insert("host", server_name.parse().map_err(|_| "host")?);
        *req.uri_mut() = path.parse().map_err(|_| "path")?;
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(TlsAnswer {
        status,
        body,
        alpn,
        version,
        peer_cert,
    })
}
