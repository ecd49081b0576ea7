//! A private `nats-server` with JetStream per test: its own free port on 127.0.0.1 (never the
//! machine's 4222) and its own store folder, stopped on drop. It can be stopped gracefully,
//! killed, and started again on the same port and store.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::free_port;

/// How long a start may take before the test fails.
const START_WITHIN: Duration = Duration::from_secs(15);
/// How long a graceful stop may take before the server is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// A running (or stopped) `nats-server -js`.
pub struct NatsServer {
    /// Client port on 127.0.0.1.
    pub port: u16,
    /// Monitoring port (for `/healthz`).
    pub monitor_port: u16,
    /// Holds the JetStream store (`js/`) and the server's log.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The `nats-server` binary: `$HOOKROUTER_NATS_SERVER`, else `nats-server` on the `PATH`, else
/// Debian's `/usr/sbin/nats-server`. Panics (the test fails, it is not skipped) when missing.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HOOKROUTER_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    if let Some(p) = on_path {
        return p;
    }
    for p in ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"] {
        if std::path::Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "nats-server not found: these tests need it (install the Debian package `nats-server`, \
         which ./test.sh does, or set HOOKROUTER_NATS_SERVER to the binary)"
    );
}

/// A free port that is not NATS's well-known one (a NATS on the machine must never be used).
fn private_port() -> u16 {
    loop {
        let p = free_port();
        if p != 4222 && p != 8222 {
            return p;
        }
    }
}

impl NatsServer {
    /// Starts a fresh server and waits until it accepts clients and JetStream is ready.
    pub fn start() -> NatsServer {
        let mut s = NatsServer {
            port: private_port(),
            monitor_port: private_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        s.spawn();
        s
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The server's log (every run, appended).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("nats log file");
        let log2 = log.try_clone().expect("nats log file");
        let store = self.dir.path().join("js");
        let child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-m"])
            .arg(self.monitor_port.to_string())
            .arg("-sd")
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_WITHIN;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "nats-server exited early with {status} (port {} taken?); log:\n{}",
                    self.port,
                    self.logs()
                );
            }
            let accepts = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if accepts && self.healthy() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not ready on port {}; log:\n{}",
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Whether `/healthz` on the monitoring port says the server and JetStream are up.
    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.monitor_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200") && out.contains("ok")
    }

    /// SIGTERM (a graceful shutdown, as an operator's restart), then waits for the exit;
    /// killed if it takes longer than 10 s.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGKILL (a crash), then waits for the process to be gone.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server gracefully and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts it again after `stop` or `kill_hard`.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
