//! Wiring: load and check the config, open the listeners, run until a signal, drain, stop.
//!
//! `prepare` is all the validation there is (`check`, startup and reload share it): a config
//! that fails it never opens a port. `run` takes a prepared config and a shutdown future, so
//! tests and the binary drive it the same way.

use std::{future::Future, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

use crate::{
    admin::{self, Health},
    config::{self, ConfigErrors},
    delivery::Engine,
    forward::Forwarder,
    ingress::Shared,
    listener::{self, Listener},
    queue::{Queue, embedded::Embedded},
    reload,
    snapshot::Snapshot,
};

/// A config that passed every check, certificates loaded.
pub struct Prepared {
    path: PathBuf,
    snapshot: Snapshot,
}

impl Prepared {
    /// How many routes the config has (for the startup summary).
    pub fn route_count(&self) -> usize {
        self.snapshot.config.routes.len()
    }
}

/// Loads and fully validates the config at `path`, including reading its certificates.
pub fn prepare(path: PathBuf) -> Result<Prepared, ConfigErrors> {
    let config = config::load(&path)?;
    let mut snapshot = Snapshot::build(config, 1)
        .map_err(|errors| ConfigErrors::new_unsorted(path.clone(), errors))?;
    snapshot.digest = crate::snapshot::file_digest(&path);
    Ok(Prepared { path, snapshot })
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging to stderr. `level` is a tracing filter (`info`, `warn`, `hookrouter=debug`).
pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("`{level}` is not a log level or filter"))?;
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Runs the router until `shutdown` resolves, then drains and returns.
pub async fn run(prepared: Prepared, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Prepared { path, snapshot } = prepared;
    let limits = snapshot.config.server.clone();
    let drain_timeout = limits.drain_timeout;

    // Bind everything before serving anything, so a port in use fails the start cleanly.
    let mut sockets = Vec::new();
    for l in &snapshot.config.listen {
        let socket = listen(l.addr).with_context(|| format!("cannot listen on {}", l.addr))?;
        sockets.push((socket, l.addr, l.tls.is_some()));
    }
    let admin_socket = match &snapshot.config.admin {
        Some(a) => {
            let socket =
                listen(a.addr).with_context(|| format!("cannot listen on {} (admin)", a.addr))?;
            Some((a.addr, socket))
        }
        None => None,
    };

    let forwarder =
        Forwarder::new().context("cannot load the system's root certificates for https targets")?;
    let delivery = open_queue(&snapshot.config).await?;
    let generation = snapshot.generation;
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        forwarder,
        delivery,
    });
    crate::metrics::config_applied(&shared.snapshot.load());
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let health = Arc::new(Health::default());

    let mut tasks = tokio::task::JoinSet::new();
    for (socket, addr, tls) in sockets {
        tracing::info!(addr = %addr, tls, "listening");
        tasks.spawn(listener::serve(Listener {
            socket,
            addr,
            tls,
            shared: shared.clone(),
            connections: connections.clone(),
            limits: limits.clone(),
            shutdown: stop_rx.clone(),
        }));
    }
    if let Some((addr, socket)) = admin_socket {
        tracing::info!(addr = %addr, "admin listening");
        tasks.spawn(admin::serve(socket, health.clone(), shared.clone()));
    }
    let watch = reload::Watch::start(path, &shared);
    tasks.spawn(reload::run(watch, shared.clone(), stop_rx.clone()));
    if shared.delivery.is_some() {
        tasks.spawn(retention(shared.clone()));
    }
    let shared_queue = shared
        .delivery
        .as_ref()
        .and_then(|e| e.queue().shared().cloned());
    if let Some(q) = &shared_queue {
        tasks.spawn(cluster(q.clone(), shared.clone()));
    }
    tasks.spawn(crate::alerts::run(shared.clone()));
    started_ms();
    health.set_ready(true);
    tracing::info!(generation, "hookrouter started");

    shutdown.await;
    health.set_ready(false);
    let _ = stop_tx.send(true);
    // Accept loops stop and drop their sockets; connections finish their requests.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(drain_timeout, connections.acquire_many(all)).await {
        Ok(_) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(
            ?drain_timeout,
            "drain timeout reached; closing remaining connections"
        ),
    }
    tasks.abort_all();
    if let Some(q) = shared_queue {
        q.leave().await;
    }
    Ok(())
}

/// Connections the kernel queues for a listener before it accepts them (the kernel caps it at
/// `net.core.somaxconn`). The default of 128 overflows under a burst while the router is short
/// of CPU, and the kernel then drops connection attempts that clients retry only after a second.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// When this process started serving, unix ms.
static STARTED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

/// When this process started serving, unix ms.
pub(crate) fn started_ms() -> i64 {
    *STARTED.get_or_init(crate::queue::now_ms)
}

/// Shared queue: announces this instance (with its config generation and digest) every few
/// seconds and counts the instances and distinct configs it sees.
async fn cluster(q: Arc<crate::queue::nats::Nats>, shared: Arc<Shared>) {
    let started_at = crate::queue::rfc3339(started_ms());
    let host = hostname();
    let m = crate::metrics::get();
    let mut failing = false;
    loop {
        let snap = shared.snapshot.load_full();
        let me = crate::queue::nats::Instance {
            id: q.instance_id().to_string(),
            host: host.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            generation: snap.generation,
            config_digest: snap.digest.clone(),
            started_at: started_at.clone(),
            seen_at: crate::queue::rfc3339(crate::queue::now_ms()),
        };
        drop(snap);
        let result = match q.announce(&me).await {
            Ok(()) => q.instances().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(all) => {
                failing = false;
                let digests: std::collections::BTreeSet<&str> =
                    all.iter().map(|i| i.config_digest.as_str()).collect();
                m.cluster_instances
                    .set(i64::try_from(all.len()).unwrap_or(i64::MAX));
                m.cluster_configs
                    .set(i64::try_from(digests.len()).unwrap_or(i64::MAX));
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot announce this instance to the others");
            }
            Err(_) => {}
        }
        tokio::time::sleep(crate::queue::nats::HEARTBEAT).await;
    }
}

/// This machine's name, for the instances list.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Opens the queue and starts delivering, when the config has async routes (a sync-only
/// config writes nothing to disk).
async fn open_queue(config: &config::Config) -> anyhow::Result<Option<Arc<Engine>>> {
    if !config.routes.iter().any(|r| r.mode == config::Mode::Async) {
        return Ok(None);
    }
    let queue = match &config.queue {
        config::Queue::Embedded(settings) => {
            let settings = settings.clone();
            let store = tokio::task::spawn_blocking(move || Embedded::open(&settings))
                .await
                .context("cannot open the queue")??;
            Queue::Embedded(store)
        }
        config::Queue::Nats(settings) => {
            let dedup = config
                .routes
                .iter()
                .filter(|r| r.mode == config::Mode::Async)
                .map(|r| r.dedup_window)
                .max()
                .unwrap_or_default();
            Queue::Nats(
                crate::queue::nats::Nats::open(settings, dedup)
                    .await
                    .context("cannot open the queue")?,
            )
        }
    };
    let engine = Engine::new(Arc::new(queue), &config.targets)
        .context("cannot load the system's root certificates for https targets")?;
    let resumed = engine
        .resume()
        .await
        .context("cannot read pending deliveries")?;
    tracing::info!(pending = resumed, "queue open; pending deliveries resumed");
    Ok(Some(engine))
}

/// Applies retention once at start, then every minute (more often when retention itself is
/// shorter, so a short retention is kept closely).
async fn retention(shared: Arc<Shared>) {
    let Some(engine) = shared.delivery.clone() else {
        return;
    };
    loop {
        let snap = shared.snapshot.load_full();
        match engine.queue().purge(&snap.config.queue).await {
            Ok(p) if p.events > 0 || p.dedup_keys > 0 => {
                tracing::info!(
                    events = p.events,
                    dedup_keys = p.dedup_keys,
                    "retention removed old events"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
        let every = match &snap.config.queue {
            config::Queue::Embedded(e) => (e.retention.min(e.dead_retention) / 4)
                .clamp(std::time::Duration::from_millis(250), RETENTION_INTERVAL),
            config::Queue::Nats { .. } => RETENTION_INTERVAL,
        };
        tokio::time::sleep(every).await;
    }
}

/// How often retention runs at most.
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The async runtime. On one CPU (a container limit or `taskset`), a single-threaded runtime
/// serves everything from one event loop like nginx's worker, without the work-stealing
/// scheduler's cross-thread bookkeeping; on more, a multi-threaded one with a worker per CPU.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    crate::shutdown::signal().await;
}
