//! HTTP/1.1 request smuggling and limits, HTTP/2 rapid reset, CONTINUATION floods and stream limits.
//!
//! Every test runs the real router with a sync route (`/hooks/sync`) and an async route
//! (`/hooks/async`, deduplication off), both with `max_body: 1KiB`, each delivering to its own
//! recording target, plus a GitHub-signed sync route for HTTP/2. A refused request must leave
//! both targets untouched and the event store empty (`GET /api/v1/events`).
//!
//! HTTP/1.1 is written as raw bytes on TCP; each case carries `?case=…` in its path, so anything
//! that does get through names the case that let it. HTTP/2 is driven by
//! `tests/http2/attacks.py` (Python `h2`, `hyperframe`, `hpack`, pinned in
//! tests/interop/requirements.txt) over TLS with ALPN h2, and once over h2c (prior knowledge)
//! on the plain listener, which hyper-util's auto builder also serves.
//!
//! What hyper 1 (httparse) does with the edge cases, as asserted here:
//! - `Content-Length` together with `Transfer-Encoding: chunked` is not refused: hyper decodes the
//!   body as chunked (RFC 9112 §6.1 lets a server do so), drops the `Content-Length` and closes
//!   the connection after the answer, so bytes after the last chunk are never read as a request.
//!   The outer request is forwarded with its chunked-decoded body.
//! - Leading/trailing whitespace around values, `Chunked` in any case, identical duplicate
//!   `Content-Length`s, a bare LF as line end in the head, empty lines before the request line
//!   and chunk extensions are accepted (all allowed by RFC 9110/9112) and forwarded exactly.
//! - At most 100 header lines (hyper's fixed count, whatever `max_header_bytes` says): a 101st
//!   is a 431, like a head over `server.max_header_bytes`. A request line over the header
//!   buffer is a 431 too (not 414).
//! - Every other framing or syntax error is a 400 from hyper, and the connection is closed.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Ca, Reply, Router, Target, blocking_get, client, free_port, send, write};

const TOKEN: &str = "http-attacks-admin-token";
/// Shared with tests/http2/attacks.py.
const SIGNING_SECRET: &str = "h2-attack-signing-secret";
const SYNC: &str = "/hooks/sync";
const ASYNC: &str = "/hooks/async";
/// The routes' `max_body`.
const MAX_BODY: usize = 1024;
/// Name the TLS certificate is for.
const SERVER_NAME: &str = "h2.test";

// HTTP/2 error codes (RFC 9113 §7).
const PROTOCOL_ERROR: u64 = 0x1;
const STREAM_CLOSED: u64 = 0x5;
const FRAME_SIZE_ERROR: u64 = 0x6;
const REFUSED_STREAM: u64 = 0x7;
const COMPRESSION_ERROR: u64 = 0x9;
const ENHANCE_YOUR_CALM: u64 = 0xb;

/// The router under attack and its two recording targets.
struct Bench {
    router: Router,
    sync_target: Target,
    async_target: Target,
    tls_port: u16,
    /// The test CA's certificate, for the Python client.
    ca_file: PathBuf,
}

impl Bench {
    async fn start() -> Bench {
        let ca = Ca::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key, _) = ca.leaf(&[SERVER_NAME]);
        write(dir.path(), "h2.pem", &cert);
        write(dir.path(), "h2.key", &key);
        write(dir.path(), "ca.pem", &ca.pem);
        let ca_file = dir.path().join("ca.pem");
        let sync_target = Target::start(Reply::default()).await;
        let async_target = Target::start(Reply::default()).await;
        let tls_port = free_port();
        let yaml = format!(
            r#"version: 1
listen:
  - addr: "127.0.0.1:{{port}}"
  - addr: "127.0.0.1:{tls_port}"
    tls: {{ cert: h2.pem, key: h2.key }}
admin: {{ addr: "127.0.0.1:{{admin}}", token: "{TOKEN}" }}
queue: {{ embedded: {{ path: "{{dir}}/queue" }} }}
targets:
  sync_t: {{ url: "{}", timeout: 2s }}
  async_t: {{ url: "{}", timeout: 2s, retry: {{ max_attempts: 1 }} }}
routes:
  - {{ name: sync, path: {SYNC}, mode: sync, max_body: 1KiB, deliver: [ {{ target: sync_t }} ] }}
  - {{ name: async, path: {ASYNC}, mode: async, max_body: 1KiB, dedup_window: 0s, deliver: [ {{ target: async_t }} ] }}
  - name: signed
    path: /hooks/signed
    mode: sync
    max_body: 1KiB
    verify: {{ scheme: github, secrets: ["{SIGNING_SECRET}"] }}
    deliver: [ {{ target: sync_t }} ]
"#,
            sync_target.url("/in"),
            async_target.url("/in"),
        );
        let router = Router::start_in(dir, &yaml);
        Bench {
            router,
            sync_target,
            async_target,
            tls_port,
            ca_file,
        }
    }

    /// The async routes' stored events, from the admin API.
    async fn events(&self) -> Vec<Value> {
        let auth = format!("Bearer {TOKEN}");
        let a = send(
            &client(),
            "GET",
            &format!("http://127.0.0.1:{}/api/v1/events", self.router.admin_port),
            &[("authorization", auth.as_str())],
            b"",
        )
        .await;
        assert_eq!(a.status, 200, "events listing");
        let v: Value = serde_json::from_slice(&a.body).expect("events JSON");
        v["events"].as_array().cloned().unwrap_or_default()
    }

    /// Neither target got a request and no event was stored.
    async fn assert_nothing_forwarded(&self, what: &str) {
        let events = self.events().await;
        assert!(events.is_empty(), "{what}: events were stored: {events:?}");
        for (name, t) in [("sync", &self.sync_target), ("async", &self.async_target)] {
            let seen: Vec<String> = t.all().iter().map(|s| s.uri.clone()).collect();
            assert!(
                seen.is_empty(),
                "{what}: the {name} target received {seen:?}"
            );
        }
    }

    /// Runs tests/http2/attacks.py against the TLS listener (or the plain one with `tls`
    /// false) on route `route` (`sync`, `async`, `signed`), and returns its JSON report.
    async fn h2(&self, tls: bool, route: &str, case: &str, arg: Option<&str>) -> Value {
        let mut cmd = Command::new(python());
        cmd.arg(attacks_script()).arg("127.0.0.1");
        if tls {
            cmd.arg(self.tls_port.to_string())
                .arg("--tls")
                .arg(&self.ca_file)
                .arg(SERVER_NAME);
        } else {
            cmd.arg(self.router.port.to_string()).arg("--plain");
        }
        cmd.args(["--route", route, case]);
        if let Some(a) = arg {
            cmd.arg(a);
        }
        let what = format!("attacks.py {case} {}", arg.unwrap_or(""));
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (./test.sh installs tests/interop/requirements.txt into \
                     target/interop-venv; set HOOKROUTER_INTEROP_PYTHON to its python)",
                    python().display()
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{what} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stdout}"));
        assert!(v["error"].is_null(), "{what}: the client failed: {v}");
        v
    }
}

fn python() -> PathBuf {
    std::env::var_os("HOOKROUTER_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python")
        })
}

fn attacks_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/http2/attacks.py")
}

// === HTTP/1.1 over raw TCP ===

/// What came back on one raw connection.
#[derive(Debug)]
struct Exchange {
    /// Status codes of the complete HTTP/1 responses, in order.
    statuses: Vec<u16>,
    /// The server closed (or reset) the connection.
    closed: bool,
    raw: Vec<u8>,
}

/// How long to wait for the server to close after its last complete response.
const CLOSE_GRACE: Duration = Duration::from_millis(1000);
/// Longest wait for anything at all.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(5);

/// Sends `bytes` on a new connection, then reads until the server closes, or `CLOSE_GRACE`
/// after the last complete response, or `EXCHANGE_LIMIT`.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Exchange {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    // The server may answer and close before it has read everything (431, 413): a failed
    // write is not the test's business, what was answered is.
    let _ = s.write_all(bytes).await;
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut closed = false;
    let mut statuses = Vec::new();
    let mut last_response: Option<Instant> = None;
    loop {
        let deadline = match last_response {
            Some(t) => (t + CLOSE_GRACE).min(started + EXCHANGE_LIMIT),
            None => started + EXCHANGE_LIMIT,
        };
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match tokio::time::timeout(deadline - now, s.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                raw.extend_from_slice(&buf[..n]);
                let parsed = parse_responses(&raw);
                if parsed.len() > statuses.len() {
                    statuses = parsed;
                    last_response = Some(Instant::now());
                }
            }
        }
    }
    Exchange {
        statuses,
        closed,
        raw,
    }
}

/// The statuses of the complete responses at the start of `raw` (1xx included).
fn parse_responses(mut raw: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    while raw.starts_with(b"HTTP/1.") {
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let Some(status) = head.get(9..12).and_then(|s| s.parse::<u16>().ok()) else {
            break;
        };
        let len = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if raw.len() < end + 4 + len {
            break;
        }
        out.push(status);
        raw = &raw[end + 4 + len..];
    }
    out
}

/// `POST {path} HTTP/1.1`, a Host, the given header lines (each ending in CRLF), a blank line
/// and `body`.
fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("POST {path} HTTP/1.1\r\nHost: hooks.test\r\n{headers}\r\n").into_bytes();
    v.extend_from_slice(body);
    v
}

/// Like `post`, with the head given as bytes (for NUL, bare CR and other non-text bytes).
fn post_bytes(path: &str, headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = format!("POST {path} HTTP/1.1\r\nHost: hooks.test\r\n").into_bytes();
    v.extend_from_slice(headers);
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(body);
    v
}

/// The same request as HTTP/1.0 (only the request line changes).
fn http10(request: Vec<u8>) -> Vec<u8> {
    let at = request
        .windows(10)
        .position(|w| w == b"HTTP/1.1\r\n")
        .expect("request line");
    let mut v = request;
    v[at + 7] = b'0';
    v
}

/// A complete second request, to be hidden in the first one's body.
fn hidden_request(route: &str) -> String {
    format!(
        "POST {route}?smuggled=1 HTTP/1.1\r\nHost: hooks.test\r\nX-Smuggled: 1\r\nContent-Length: 17\r\n\r\n{{\"smuggled\":true}}"
    )
}

/// A request the router must refuse with `status`, then close the connection.
struct Refusal {
    name: &'static str,
    status: u16,
    bytes: Vec<u8>,
}

fn refused(name: &'static str, status: u16, bytes: Vec<u8>) -> Refusal {
    Refusal {
        name,
        status,
        bytes,
    }
}

/// Sends every case of `cases(path)` to the sync and the async route, all at once, and checks
/// each answer; then that nothing was forwarded or stored.
async fn assert_refused(bench: &Bench, group: &str, cases: impl Fn(&str) -> Vec<Refusal>) {
    let addr = bench.router.addr();
    let mut runs = Vec::new();
    for route in [SYNC, ASYNC] {
        for (i, case) in cases(&format!("{route}?case={group}-{{i}}"))
            .into_iter()
            .enumerate()
        {
            // Each case's path names it: `{i}` is replaced here, so that templates can repeat
            // the path (hidden requests) before knowing their index.
            let bytes = replace_all(&case.bytes, b"{i}", i.to_string().as_bytes());
            runs.push((
                route,
                case.name,
                case.status,
                tokio::spawn(async move { exchange(addr, &bytes).await }),
            ));
        }
    }
    let mut failures = Vec::new();
    for (route, name, status, run) in runs {
        let ex = run.await.expect("join");
        let ok = ex.statuses.first() == Some(&status) && ex.statuses.len() == 1 && ex.closed;
        if !ok {
            failures.push(format!(
                "{route} `{name}`: expected {status} and a close, got {:?} closed={} raw={:?}",
                ex.statuses,
                ex.closed,
                String::from_utf8_lossy(&ex.raw[..ex.raw.len().min(300)])
            ));
        }
    }
    assert!(failures.is_empty(), "{group}:\n{}", failures.join("\n"));
    bench.assert_nothing_forwarded(group).await;
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn h1_cl_te_smuggling_never_delivers_the_hidden_request() {
    let bench = Bench::start().await;
    let addr = bench.router.addr();
    // (name, request, the body the router must decode for the outer request)
    let cases = |route: &str, path: &str| -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
        let hidden = hidden_request(route);
        let after_last_chunk = format!("0\r\n\r\n{hidden}");
        let whole = after_last_chunk.len();
        let in_chunk = format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len());
        let size_line = format!("{:x}\r\n", hidden.len()).len();
        let cl_te = |te: &str| {
            post(
                path,
                &format!("Content-Length: {whole}\r\nTransfer-Encoding: {te}\r\n"),
                after_last_chunk.as_bytes(),
            )
        };
        vec![
            // CL.TE: a Content-Length reader takes everything as body, a chunked reader sees
            // the hidden request after the last chunk.
            ("CL.TE", cl_te("chunked"), vec![]),
            (
                "TE.CL (Transfer-Encoding first)",
                post(
                    path,
                    &format!("Transfer-Encoding: chunked\r\nContent-Length: {whole}\r\n"),
                    after_last_chunk.as_bytes(),
                ),
                vec![],
            ),
            // TE.CL: Content-Length covers only the chunk-size line, so a Content-Length reader
            // sees the hidden request inside the chunk; a chunked reader sees data.
            (
                "TE.CL, the request inside the chunk",
                post(
                    path,
                    &format!("Content-Length: {size_line}\r\nTransfer-Encoding: chunked\r\n"),
                    in_chunk.as_bytes(),
                ),
                hidden.clone().into_bytes(),
            ),
            ("CL.TE, `Chunked`", cl_te("Chunked"), vec![]),
            ("CL.TE, tab before chunked", cl_te("\tchunked"), vec![]),
            (
                "CL.TE, `chunked ` with a trailing space",
                cl_te("chunked "),
                vec![],
            ),
            (
                "CL.TE, Content-Length twice",
                post(
                    path,
                    &format!(
                        "Content-Length: {whole}\r\nContent-Length: {whole}\r\nTransfer-Encoding: chunked\r\n"
                    ),
                    after_last_chunk.as_bytes(),
                ),
                vec![],
            ),
        ]
    };
    let mut runs = Vec::new();
    for (route, status) in [(SYNC, 200), (ASYNC, 202)] {
        let path = format!("{route}?case=smuggle-{{i}}");
        for (i, (name, bytes, body)) in cases(route, &path).into_iter().enumerate() {
            let bytes = replace_all(&bytes, b"{i}", i.to_string().as_bytes());
            runs.push((
                route,
                name,
                status,
                body,
                tokio::spawn(async move { exchange(addr, &bytes).await }),
            ));
        }
    }
    let n = runs.len() / 2;
    let mut sync_bodies = Vec::new();
    let mut async_sizes = Vec::new();
    for (route, name, status, body, run) in runs {
        let ex = run.await.expect("join");
        // One answer for the outer request, then the connection closes: the hidden request is
        // never read as a request.
        assert_eq!(
            ex.statuses,
            vec![status],
            "{route} `{name}`: {:?}",
            String::from_utf8_lossy(&ex.raw)
        );
        assert!(ex.closed, "{route} `{name}`: connection left open");
        if route == SYNC {
            sync_bodies.push(body);
        } else {
            async_sizes.push(body.len() as u64);
        }
    }
    // What got through is only the outer requests, with their chunked-decoded bodies.
    let seen = bench.sync_target.all();
    assert_eq!(seen.len(), n, "sync target: {seen:?}");
    for s in &seen {
        assert!(
            !s.uri.contains("smuggled") && s.headers.get("x-smuggled").is_none(),
            "a hidden request reached the sync target: {s:?}"
        );
        assert!(s.headers.get("transfer-encoding").is_none(), "{s:?}");
    }
    let mut got: Vec<Vec<u8>> = seen.iter().map(|s| s.body.to_vec()).collect();
    got.sort();
    sync_bodies.sort();
    assert_eq!(got, sync_bodies, "sync target bodies");
    let events = bench.events().await;
    let mut sizes: Vec<u64> = events
        .iter()
        .map(|e| e["body_bytes"].as_u64().expect("body_bytes"))
        .collect();
    sizes.sort_unstable();
    async_sizes.sort_unstable();
    assert_eq!(sizes, async_sizes, "async events: {events:?}");
    // Deliveries of the outer async requests happen in the background: none is a hidden one.
    assert!(
        crate::support::eventually(Duration::from_secs(5), || bench.async_target.count() == n)
            .await,
        "async deliveries: {:?}",
        bench.async_target.all()
    );
    for s in bench.async_target.all() {
        assert!(
            !s.uri.contains("smuggled") && s.headers.get("x-smuggled").is_none(),
            "a hidden request reached the async target: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn h1_content_length_with_an_unusable_transfer_encoding_is_400() {
    let bench = Bench::start().await;
    assert_refused(&bench, "cl-te-400", |path| {
        let route = path.split('?').next().unwrap_or(path);
        let body = format!("0\r\n\r\n{}", hidden_request(route));
        let cl = body.len();
        let with_te = |te: &str| {
            post_bytes(
                path,
                format!("Content-Length: {cl}\r\n{te}\r\n").as_bytes(),
                body.as_bytes(),
            )
        };
        let http10 = http10(with_te("Transfer-Encoding: chunked"));
        vec![
            refused(
                "CL + TE identity",
                400,
                with_te("Transfer-Encoding: identity"),
            ),
            refused(
                "CL + TE x-chunked",
                400,
                with_te("Transfer-Encoding: x-chunked"),
            ),
            refused(
                "CL + TE `chunked, identity`",
                400,
                with_te("Transfer-Encoding: chunked, identity"),
            ),
            refused(
                "CL + TE twice (chunked, then identity)",
                400,
                with_te("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"),
            ),
            refused("CL + TE on HTTP/1.0", 400, http10),
            refused(
                "CL + TE folded onto a continuation line",
                400,
                with_te("Transfer-Encoding:\r\n chunked"),
            ),
            refused(
                "CL + TE with a space before the colon",
                400,
                with_te("Transfer-Encoding : chunked"),
            ),
            refused(
                "CL + TE with a vertical tab",
                400,
                with_te("Transfer-Encoding: \x0bchunked"),
            ),
            refused("CL + empty TE", 400, with_te("Transfer-Encoding: ")),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h1_malformed_content_length_is_400() {
    let bench = Bench::start().await;
    assert_refused(&bench, "cl", |path| {
        let cl = |v: &str, body: &[u8]| post(path, &format!("Content-Length: {v}\r\n"), body);
        vec![
            refused(
                "two Content-Lengths, different values",
                400,
                post(path, "Content-Length: 2\r\nContent-Length: 3\r\n", b"{}x"),
            ),
            refused("+2", 400, cl("+2", b"{}")),
            refused("-1", 400, cl("-1", b"{}")),
            refused("0x2", 400, cl("0x2", b"{}")),
            refused("`2 2`", 400, cl("2 2", b"{}")),
            refused("`2,2`", 400, cl("2,2", b"{}")),
            refused(
                "20 digits (over u64)",
                400,
                cl("99999999999999999999", b"{}"),
            ),
            refused("empty", 400, cl("", b"{}")),
            refused("2 then a vertical tab", 400, cl("2\x0b", b"{}")),
            refused("2.0", 400, cl("2.0", b"{}")),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h1_transfer_encodings_other_than_chunked_are_400() {
    let bench = Bench::start().await;
    assert_refused(&bench, "te", |path| {
        let chunked_body = b"2\r\n{}\r\n0\r\n\r\n";
        let te = |v: &str| post(path, &format!("{v}\r\n"), chunked_body);
        let http10 = http10(te("Transfer-Encoding: chunked"));
        vec![
            refused("identity", 400, te("Transfer-Encoding: identity")),
            refused(
                "`chunked, identity`",
                400,
                te("Transfer-Encoding: chunked, identity"),
            ),
            refused("x-chunked", 400, te("Transfer-Encoding: x-chunked")),
            refused(
                "twice: chunked, then identity",
                400,
                te("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"),
            ),
            refused("chunked on HTTP/1.0", 400, http10),
            refused("empty", 400, te("Transfer-Encoding: ")),
            refused("`chunked;q=1`", 400, te("Transfer-Encoding: chunked;q=1")),
        ]
    })
    .await;
}

/// hyper only checks that the *last* transfer coding is `chunked` and drops the ones before it;
/// the router refuses any `Transfer-Encoding` other than exactly `chunked`, so still-coded bytes
/// are never passed on as the plain body.
#[tokio::test(flavor = "multi_thread")]
async fn h1_codings_before_chunked_are_refused() {
    let bench = Bench::start().await;
    let addr = bench.router.addr();
    let mut failures = Vec::new();
    for route in [SYNC, ASYNC] {
        for (i, te) in [
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: foo, chunked",
        ]
        .iter()
        .enumerate()
        {
            let path = format!("{route}?case=coding-{i}");
            let ex = exchange(
                addr,
                &post(&path, &format!("{te}\r\n"), b"2\r\n{}\r\n0\r\n\r\n"),
            )
            .await;
            if !matches!(ex.statuses.first(), Some(400 | 501)) {
                failures.push(format!("{route} {te:?}: got {:?}", ex.statuses));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    bench
        .assert_nothing_forwarded("codings before chunked")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h1_malformed_chunked_bodies_are_400() {
    let bench = Bench::start().await;
    assert_refused(&bench, "chunk", |path| {
        let chunked = |body: &[u8]| post(path, "Transfer-Encoding: chunked\r\n", body);
        let mut huge_ext = b"2;".to_vec();
        huge_ext.extend(std::iter::repeat_n(b'a', 70_000));
        huge_ext.extend_from_slice(b"\r\n{}\r\n0\r\n\r\n");
        vec![
            refused("size not hex", 400, chunked(b"zz\r\n{}\r\n0\r\n\r\n")),
            refused("negative size", 400, chunked(b"-2\r\n{}\r\n0\r\n\r\n")),
            refused(
                "size over 64 bits",
                400,
                chunked(b"fffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
            ),
            refused("size with 0x", 400, chunked(b"0x2\r\n{}\r\n0\r\n\r\n")),
            refused("size `2 2`", 400, chunked(b"2 2\r\n{}\r\n0\r\n\r\n")),
            refused(
                "space before the size",
                400,
                chunked(b" 2\r\n{}\r\n0\r\n\r\n"),
            ),
            refused("empty size line", 400, chunked(b"\r\n{}\r\n0\r\n\r\n")),
            refused(
                "bare LF inside an extension",
                400,
                chunked(b"2;foo\nbar\r\n{}\r\n0\r\n\r\n"),
            ),
            refused("70 000-byte extension", 400, chunked(&huge_ext)),
            refused(
                "more data than the size",
                400,
                chunked(b"2\r\n{}xx\r\n0\r\n\r\n"),
            ),
            refused("no CRLF after the data", 400, chunked(b"2\r\n{}0\r\n\r\n")),
            refused("LF-only chunk lines", 400, chunked(b"2\n{}\n0\n\n")),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h1_malformed_header_syntax_is_400() {
    let bench = Bench::start().await;
    assert_refused(&bench, "syntax", |path| {
        let h = |line: &[u8]| {
            let mut head = line.to_vec();
            head.extend_from_slice(b"\r\nContent-Length: 2\r\n");
            post_bytes(path, &head, b"{}")
        };
        let bare_cr_line =
            format!("POST {path} HTTP/1.1\rHost: hooks.test\r\nContent-Length: 2\r\n\r\n{{}}")
                .into_bytes();
        vec![
            refused("obs-fold continuation line", 400, h(b"X-A: a\r\n b")),
            refused("bare CR inside a value", 400, h(b"X-A: a\rb")),
            refused("bare CR ending the request line", 400, bare_cr_line),
            refused("NUL in a name", 400, h(b"X-A\x00b: c")),
            refused("NUL in a value", 400, h(b"X-A: b\x00c")),
            refused(
                "space before the colon",
                400,
                post(path, "Content-Length : 2\r\n", b"{}"),
            ),
            refused(
                "tab before the colon",
                400,
                post(path, "Content-Length\t: 2\r\n", b"{}"),
            ),
            refused("space inside a name", 400, h(b"X A: b")),
            refused(
                "whitespace-led line after the request line",
                400,
                format!(
                    "POST {path} HTTP/1.1\r\n Host: hooks.test\r\nContent-Length: 2\r\n\r\n{{}}"
                )
                .into_bytes(),
            ),
            refused("empty name", 400, h(b": v")),
            refused("no colon", 400, h(b"X-A b")),
            refused("control character in a value", 400, h(b"X-A: a\x01b")),
            refused("DEL in a value", 400, h(b"X-A: a\x7fb")),
            refused("non-ASCII name", 400, h(b"X-\xc3\xa9: v")),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h1_limits_are_431_and_413() {
    let bench = Bench::start().await;
    let over_body = MAX_BODY * 2;
    assert_refused(&bench, "limits", |path| {
        let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
        let mut unterminated = format!("{:x}\r\n", over_body * 2).into_bytes();
        unterminated.extend(std::iter::repeat_n(b'a', over_body * 2));
        vec![
            // Default server.max_header_bytes: 64 KiB.
            refused(
                "header block over max_header_bytes",
                431,
                post(
                    path,
                    &format!("X-Big: {}\r\nContent-Length: 2\r\n", "a".repeat(70_000)),
                    b"{}",
                ),
            ),
            // hyper's fixed limit is 100 header lines (Host is one of them).
            refused(
                "101 header lines",
                431,
                post(path, &format!("{many}Content-Length: 2\r\n"), b"{}"),
            ),
            refused(
                "request line over the header buffer",
                431,
                format!(
                    "POST {path}&{} HTTP/1.1\r\nHost: hooks.test\r\nContent-Length: 2\r\n\r\n{{}}",
                    "a".repeat(70_000)
                )
                .into_bytes(),
            ),
            // Refused from the declared length alone: the body is never sent.
            refused(
                "Content-Length over max_body, no body sent",
                413,
                post(path, &format!("Content-Length: {over_body}\r\n"), b""),
            ),
            // No `100 Continue` first: the client is told 413 before it sends anything.
            refused(
                "Expect: 100-continue over max_body",
                413,
                post(
                    path,
                    &format!("Content-Length: {over_body}\r\nExpect: 100-continue\r\n"),
                    b"",
                ),
            ),
            // Undeclared length: refused once max_body bytes arrived, without waiting for the
            // end of the chunk (which never comes).
            refused(
                "unterminated chunked body over max_body",
                413,
                post(path, "Transfer-Encoding: chunked\r\n", &unterminated),
            ),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h1_request_line_garbage_is_400() {
    let bench = Bench::start().await;
    assert_refused(&bench, "line", |path| {
        let line = |l: String| format!("{l}\r\nHost: hooks.test\r\nContent-Length: 2\r\n\r\n{{}}");
        vec![
            // What a TLS client sends first, on the plain listener.
            refused(
                "TLS ClientHello bytes",
                400,
                b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n".to_vec(),
            ),
            refused(
                "invalid method character",
                400,
                line(format!("P@ST {path} HTTP/1.1")).into_bytes(),
            ),
            refused(
                "HTTP/1.2",
                400,
                line(format!("POST {path} HTTP/1.2")).into_bytes(),
            ),
            refused(
                "HTTP/2.0 as text",
                400,
                line(format!("POST {path} HTTP/2.0")).into_bytes(),
            ),
            refused(
                "lowercase version",
                400,
                line(format!("POST {path} http/1.1")).into_bytes(),
            ),
            refused(
                "HTTP/0.9 simple request",
                400,
                format!("GET {path}\r\n\r\n").into_bytes(),
            ),
            refused(
                "two spaces in the request line",
                400,
                line(format!("POST  {path} HTTP/1.1")).into_bytes(),
            ),
            refused(
                "tab as separator",
                400,
                line(format!("POST\t{path} HTTP/1.1")).into_bytes(),
            ),
        ]
    })
    .await;

    // The HTTP/2 preface switches the plain listener to h2c (hyper-util's auto builder); what
    // follows is no SETTINGS frame but HTTP/1 text, read as a frame header with a 5 MB length:
    // the server's SETTINGS are followed by GOAWAY FRAME_SIZE_ERROR (or PROTOCOL_ERROR) and
    // the connection closes.
    let ex = exchange(
        bench.router.addr(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nPOST /hooks/sync HTTP/1.1\r\nHost: hooks.test\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert!(ex.closed, "h2c preface then garbage: connection left open");
    let goaway = h2_frames(&ex.raw)
        .into_iter()
        .find(|(kind, _)| *kind == 0x7)
        .map(|(_, payload)| payload);
    let code = goaway
        .as_deref()
        .and_then(|p| p.get(4..8))
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    assert!(
        code.is_some_and(|c| [PROTOCOL_ERROR, FRAME_SIZE_ERROR].contains(&u64::from(c))),
        "h2c preface then garbage: GOAWAY code {code:?}, frames {:?}",
        h2_frames(&ex.raw)
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
    );
    bench
        .assert_nothing_forwarded("h2c preface then garbage")
        .await;
}

/// The (type, payload) of each complete HTTP/2 frame in `raw`.
fn h2_frames(mut raw: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while raw.len() >= 9 {
        let len = usize::from(raw[0]) << 16 | usize::from(raw[1]) << 8 | usize::from(raw[2]);
        if raw.len() < 9 + len {
            break;
        }
        out.push((raw[3], raw[9..9 + len].to_vec()));
        raw = &raw[9 + len..];
    }
    out
}

/// The lenient parts of HTTP/1.1 that hyper accepts (all allowed by RFC 9110/9112): each such
/// request is forwarded once, with exactly its body, and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn h1_lenient_but_valid_framing_is_forwarded_exactly() {
    let bench = Bench::start().await;
    let addr = bench.router.addr();
    let p = |i: usize| format!("{SYNC}?case=lenient-{i}");
    let chunked = |i: usize, te: &str, body: &[u8]| {
        post(&p(i), &format!("Transfer-Encoding: {te}\r\n"), body)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "control: a plain request",
            post(&p(0), "Content-Length: 2\r\n", b"{}"),
        ),
        (
            "two identical Content-Lengths",
            post(&p(1), "Content-Length: 2\r\nContent-Length: 2\r\n", b"{}"),
        ),
        (
            "extra whitespace around the Content-Length value",
            post(&p(2), "Content-Length: \t 2 \t\r\n", b"{}"),
        ),
        ("`Chunked`", chunked(3, "Chunked", b"2\r\n{}\r\n0\r\n\r\n")),
        (
            "`chunked ` (trailing space)",
            chunked(4, "chunked ", b"2\r\n{}\r\n0\r\n\r\n"),
        ),
        (
            "tab before chunked",
            chunked(5, "\tchunked", b"2\r\n{}\r\n0\r\n\r\n"),
        ),
        (
            "chunk extension",
            chunked(6, "chunked", b"2;name=\"value\"\r\n{}\r\n0;last\r\n\r\n"),
        ),
        (
            "trailer fields, one of them a Content-Length",
            chunked(
                7,
                "chunked",
                b"2\r\n{}\r\n0\r\nContent-Length: 50\r\nX-Trailer: t\r\n\r\n",
            ),
        ),
        (
            "bare LF line ends in the head",
            format!(
                "POST {} HTTP/1.1\nHost: hooks.test\nContent-Length: 2\n\n{{}}",
                p(8)
            )
            .into_bytes(),
        ),
        (
            "empty line before the request line",
            [
                b"\r\n".to_vec(),
                post(&p(9), "Content-Length: 2\r\n", b"{}"),
            ]
            .concat(),
        ),
    ];
    let n = cases.len();
    let mut runs = Vec::new();
    for (name, bytes) in cases {
        runs.push((
            name,
            tokio::spawn(async move { exchange(addr, &bytes).await }),
        ));
    }
    for (name, run) in runs {
        let ex = run.await.expect("join");
        assert_eq!(
            ex.statuses,
            vec![200],
            "`{name}`: {:?}",
            String::from_utf8_lossy(&ex.raw)
        );
    }
    let seen = bench.sync_target.all();
    assert_eq!(seen.len(), n, "{seen:?}");
    for i in 0..n {
        let uri = format!("/in?case=lenient-{i}");
        let got: Vec<_> = seen.iter().filter(|s| s.uri == uri).collect();
        assert_eq!(got.len(), 1, "case {i}: {seen:?}");
        assert_eq!(&got[0].body[..], b"{}", "case {i}");
        assert_eq!(
            got[0].headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"2"[..]),
            "case {i}: {:?}",
            got[0].headers
        );
        assert!(got[0].headers.get("transfer-encoding").is_none());
        assert!(
            got[0].headers.get("x-trailer").is_none(),
            "trailers are not headers"
        );
    }
}

// === HTTP/2 (tests/http2/attacks.py) ===

fn stream<'a>(v: &'a Value, id: &str) -> &'a Value {
    &v["streams"][id]
}

fn goaway_code(v: &Value) -> Option<u64> {
    v["goaway"]["code"].as_u64()
}

/// An h2 request that must be refused: a 4xx on the stream, or the stream or the connection
/// reset with one of `codes`.
fn assert_h2_refused(v: &Value, codes: &[u64], what: &str) {
    let s = stream(v, "1");
    let status = s["status"].as_u64();
    let reset = s["reset"].as_u64();
    let ok = status.is_some_and(|c| (400..500).contains(&c))
        || reset.is_some_and(|c| codes.contains(&c))
        || goaway_code(v).is_some_and(|c| codes.contains(&c));
    assert!(ok, "{what}: not refused: {v}");
    assert!(
        status.is_none_or(|c| c >= 400),
        "{what}: answered {status:?}: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_valid_requests_reach_the_targets() {
    let bench = Bench::start().await;
    // Over TLS with ALPN h2, both routes on one connection.
    let v = bench
        .h2(true, "sync", "valid", Some("/hooks/sync,/hooks/async"))
        .await;
    assert_eq!(stream(&v, "1")["status"], 200, "{v}");
    assert_eq!(stream(&v, "3")["status"], 202, "{v}");
    // h2c with prior knowledge on the plain listener.
    let v = bench.h2(false, "sync", "valid", Some("/hooks/sync")).await;
    assert_eq!(stream(&v, "1")["status"], 200, "{v}");
    let seen = bench.sync_target.all();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(&s.body[..], br#"{"type":"h2.valid"}"#);
        assert_eq!(
            s.headers.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(if std::ptr::eq(s, &seen[0]) {
                &b"https"[..]
            } else {
                &b"http"[..]
            })
        );
    }
    assert!(
        crate::support::eventually(Duration::from_secs(5), || bench.async_target.count() == 1)
            .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_rapid_reset_gets_goaway_and_the_router_stays_healthy() {
    let bench = Bench::start().await;
    for route in ["sync", "async"] {
        let v = bench.h2(true, route, "rapid-reset", Some("10000")).await;
        // hyper's max_pending_accept_reset_streams (20): GOAWAY ENHANCE_YOUR_CALM long before
        // the 10 000 streams are through.
        assert_eq!(goaway_code(&v), Some(ENHANCE_YOUR_CALM), "{route}: {v}");
        assert!(v["closed"].as_bool().unwrap_or(false), "{route}: {v}");
        let sent = v["sent"].as_u64().expect("sent");
        assert!(sent < 10_000, "{route}: all {sent} streams went through");
        let accepted = v["goaway"]["last_stream_id"].as_u64().expect("last id");
        assert!(accepted < 200, "{route}: {accepted} streams accepted: {v}");
    }
    bench.assert_nothing_forwarded("rapid reset").await;
    // A new connection is served at once.
    let started = Instant::now();
    let v = bench
        .h2(true, "sync", "valid", Some("/hooks/sync,/hooks/async"))
        .await;
    assert_eq!(stream(&v, "1")["status"], 200, "{v}");
    assert_eq!(stream(&v, "3")["status"], 202, "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "slow after the attack: {:?}",
        started.elapsed()
    );
    assert_eq!(
        blocking_get(bench.router.admin_port, "/readyz").map(|(s, _)| s),
        Some(200)
    );
}

/// The router process's resident memory, in KiB (found by its config path on the command line).
fn router_rss_kib(router: &Router) -> Option<u64> {
    let config = router.config.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("hookrouter") && cmdline.contains(&config) {
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_continuation_flood_is_cut_off_with_bounded_memory() {
    let bench = Bench::start().await;
    let before = router_rss_kib(&bench.router).expect("router RSS");
    for route in ["sync", "async"] {
        // Up to 64 MiB of CONTINUATION frames (16 KiB each) after a HEADERS without END_HEADERS.
        let v = bench
            .h2(true, route, "continuation-flood", Some("64"))
            .await;
        assert!(v["closed"].as_bool().unwrap_or(false), "{route}: {v}");
        // h2 allows max_header_list_size / frame size + 25 % CONTINUATION frames (5 here),
        // then GOAWAY ENHANCE_YOUR_CALM (`too_many_continuations`).
        if let Some(code) = goaway_code(&v) {
            assert!(
                [ENHANCE_YOUR_CALM, COMPRESSION_ERROR, PROTOCOL_ERROR].contains(&code),
                "{route}: {v}"
            );
        }
        let frames = v["sent"].as_u64().expect("sent");
        assert!(
            frames <= 64,
            "{route}: {frames} CONTINUATION frames (16 KiB each) were read before the cut: {v}"
        );
    }
    let after = router_rss_kib(&bench.router).expect("router RSS");
    assert!(
        after < before + 16 * 1024,
        "router RSS grew from {before} KiB to {after} KiB"
    );
    bench.assert_nothing_forwarded("CONTINUATION flood").await;
    let v = bench.h2(true, "sync", "valid", Some("/hooks/sync")).await;
    assert_eq!(stream(&v, "1")["status"], 200, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_streams_over_max_concurrent_streams_are_refused() {
    let bench = Bench::start().await;
    // 160 streams opened at once (bodies never sent): the 32 beyond the advertised 128 are
    // refused with REFUSED_STREAM, the connection lives on.
    let v = bench
        .h2(true, "sync", "too-many-streams", Some("160"))
        .await;
    assert_eq!(v["max_concurrent"], 128, "{v}");
    let refused: Vec<u64> = v["streams"]
        .as_object()
        .expect("streams")
        .iter()
        .filter(|(_, s)| s["reset"].as_u64() == Some(REFUSED_STREAM))
        .map(|(id, _)| id.parse().expect("id"))
        .collect();
    assert_eq!(refused.len(), 32, "{v}");
    assert!(
        refused.iter().all(|id| *id > 255),
        "refused within the limit: {refused:?}"
    );
    assert!(v["goaway"].is_null(), "{v}");
    // 300 at once: after 64 refusals hyper's max_local_error_reset_streams closes the
    // connection with GOAWAY ENHANCE_YOUR_CALM.
    let v = bench
        .h2(true, "async", "too-many-streams", Some("300"))
        .await;
    assert_eq!(goaway_code(&v), Some(ENHANCE_YOUR_CALM), "{v}");
    assert!(
        v["goaway"]["last_stream_id"]
            .as_u64()
            .is_some_and(|id| id <= 255),
        "{v}"
    );
    // The open streams' bodies never came: nothing is forwarded once the connections close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    bench
        .assert_nothing_forwarded("streams over the limit")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_header_list_over_max_header_list_size_is_refused() {
    let bench = Bench::start().await;
    for route in ["sync", "async"] {
        for how in ["one", "many"] {
            let v = bench.h2(true, route, "big-header-list", Some(how)).await;
            // Advertised from server.max_header_bytes (64 KiB).
            assert_eq!(v["limit"], 65536, "{v}");
            let status = stream(&v, "1")["status"].as_u64();
            let reset = stream(&v, "1")["reset"].as_u64();
            assert!(
                status == Some(431) || reset == Some(REFUSED_STREAM),
                "{route} {how}: {v}"
            );
        }
    }
    bench
        .assert_nothing_forwarded("header list over the limit")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_body_over_max_body_is_413() {
    let bench = Bench::start().await;
    for route in ["sync", "async"] {
        let v = bench
            .h2(true, route, "body-too-large", Some("declared"))
            .await;
        assert_eq!(stream(&v, "1")["status"], 413, "{route}: {v}");
        assert_eq!(
            stream(&v, "1")["answered_before_body"],
            true,
            "{route}: a declared length over max_body is refused before the body: {v}"
        );
        let v = bench
            .h2(true, route, "body-too-large", Some("streamed"))
            .await;
        assert_eq!(stream(&v, "1")["status"], 413, "{route}: {v}");
    }
    bench.assert_nothing_forwarded("body over max_body").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_content_length_mismatch_is_refused() {
    let bench = Bench::start().await;
    for route in ["sync", "async"] {
        for how in ["short", "long"] {
            let v = bench
                .h2(true, route, "content-length-mismatch", Some(how))
                .await;
            assert_h2_refused(&v, &[PROTOCOL_ERROR], &format!("{route} {how}"));
        }
    }
    bench
        .assert_nothing_forwarded("content-length mismatch")
        .await;
}

/// A complete request (HEADERS with END_STREAM) followed by DATA on the same stream. h2 makes
/// it a connection error (GOAWAY PROTOCOL_ERROR) rather than RFC 9113's stream error
/// STREAM_CLOSED; both are fine. The request itself was complete (an empty POST), so whether
/// it is forwarded depends on whether hyper handed it over before reading the DATA: what
/// matters is that the late DATA never reaches anyone.
#[tokio::test(flavor = "multi_thread")]
async fn h2_data_after_end_stream_is_a_protocol_error() {
    let bench = Bench::start().await;
    for route in ["sync", "async"] {
        let v = bench.h2(true, route, "data-after-end-stream", None).await;
        let reset = stream(&v, "1")["reset"].as_u64();
        assert!(
            reset == Some(STREAM_CLOSED)
                || goaway_code(&v).is_some_and(|c| c == PROTOCOL_ERROR || c == STREAM_CLOSED),
            "{route}: {v}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in bench
        .sync_target
        .all()
        .iter()
        .chain(bench.async_target.all().iter())
    {
        assert!(s.body.is_empty(), "the late DATA was forwarded: {s:?}");
    }
    assert!(bench.sync_target.count() <= 1);
    for e in bench.events().await {
        assert_eq!(e["body_bytes"], 0, "the late DATA was stored: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_malformed_header_blocks_are_rejected() {
    let bench = Bench::start().await;
    let kinds = [
        "missing-path",
        "empty-path",
        "missing-method",
        "duplicate-method",
        "duplicate-path",
        "unknown-pseudo",
        "pseudo-after-regular",
        "status-in-request",
        "uppercase-name",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te-gzip",
        "nul-in-value",
        "crlf-in-value",
        "space-in-name",
    ];
    let bench = std::sync::Arc::new(bench);
    let mut runs = Vec::new();
    for route in ["sync", "async"] {
        for kind in kinds {
            let b = bench.clone();
            runs.push((
                route,
                kind,
                tokio::spawn(async move { b.h2(true, route, "malformed", Some(kind)).await }),
            ));
        }
    }
    for (route, kind, run) in runs {
        let v = run.await.expect("join");
        // Stream error PROTOCOL_ERROR (RST_STREAM) for malformed requests; a header block
        // that cannot even be decoded into fields is a connection error (GOAWAY).
        assert_h2_refused(
            &v,
            &[PROTOCOL_ERROR, COMPRESSION_ERROR],
            &format!("{route} {kind}"),
        );
    }
    bench
        .assert_nothing_forwarded("malformed header blocks")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_tampered_signed_body_is_401_and_not_forwarded() {
    let bench = Bench::start().await;
    let v = bench.h2(true, "signed", "signed", Some("tampered")).await;
    assert_eq!(stream(&v, "1")["status"], 401, "{v}");
    bench.assert_nothing_forwarded("tampered signed body").await;
    // The same request, untouched, passes.
    let v = bench.h2(true, "signed", "signed", Some("ok")).await;
    assert_eq!(stream(&v, "1")["status"], 200, "{v}");
    let seen = bench.sync_target.last();
    assert_eq!(&seen.body[..], br#"{"action":"opened","amount":100}"#);
}
