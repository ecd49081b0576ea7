//! Reloading: on SIGHUP, or when the config file or a certificate/key file it names changes,
//! the file is loaded and validated in full and the certificates are read; only then is the
//! new snapshot swapped in. Any error keeps the running config and logs every problem.
//! Requests in flight keep the snapshot they started with.
//!
//! Files are polled (size, mtime, inode) rather than watched with inotify: polling also sees
//! editors that replace the file and Kubernetes ConfigMaps that swap a symlink, and costs a few
//! `stat` calls a second. A change must hold still for one poll before it is loaded, so a file
//! caught half-written is not reported as broken.
//!
//! Settings bound at startup (listen and admin addresses, `server:`, `queue:`) are compared:
//! a change to them is logged as needing a restart, and the rest of the new config applies.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use crate::{config, ingress::Shared, snapshot::Snapshot};

/// How often watched files are checked.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What a file looked like at the last poll; `None` when it could not be read.
type Fingerprint = Vec<Option<(u64, SystemTime, u64)>>;

/// The SIGHUP handler and the files' state, taken before the router reports ready: a SIGHUP
/// sent as soon as it is ready must find the handler installed (the default action of
/// SIGHUP ends the process), and a file changed right after must count as a change.
pub(crate) struct Watch {
    path: PathBuf,
    hangup: Option<tokio::signal::unix::Signal>,
    files: Vec<PathBuf>,
    seen: Fingerprint,
}

impl Watch {
    /// Installs the handler and takes the files' fingerprints (needs the runtime).
    pub(crate) fn start(path: PathBuf, shared: &Shared) -> Watch {
        use tokio::signal::unix::{SignalKind, signal};
        let hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot install SIGHUP handler; reload on file change only");
                None
            }
        };
        let files = watched_files(&path, &shared.snapshot.load());
        let seen = fingerprint(&files);
        Watch {
            path,
            hangup,
            files,
            seen,
        }
    }
}

/// Runs until shutdown, reloading on SIGHUP and file changes.
pub(crate) async fn run(watch: Watch, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Watch {
        path,
        mut hangup,
        mut files,
        mut seen,
    } = watch;
    let mut pending: Option<Fingerprint> = None;
    loop {
        tokio::select! {
            _ = async { match hangup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                tracing::info!("SIGHUP received, reloading configuration");
                reload(&path, &shared);
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => {
                let now = fingerprint(&files);
                if now == seen {
                    pending = None;
                    continue;
                }
                if pending.as_ref() != Some(&now) {
                    // Changed since the last poll: wait until it holds still.
                    pending = Some(now);
                    continue;
                }
                tracing::info!("configuration or certificate file changed, reloading");
                reload(&path, &shared);
                pending = None;
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        files = watched_files(&path, &shared.snapshot.load());
        seen = fingerprint(&files);
    }
}

/// Loads, validates and swaps in the config at `path`. Returns whether it was applied.
pub(crate) fn reload(path: &Path, shared: &Shared) -> bool {
    let applied = try_reload(path, shared);
    let m = crate::metrics::get();
    m.reloads
        .with_label_values(&[if applied { "success" } else { "failure" }])
        .inc();
    m.last_reload_success.set(i64::from(applied));
    if applied {
        crate::metrics::config_applied(&shared.snapshot.load());
    }
    applied
}

fn try_reload(path: &Path, shared: &Shared) -> bool {
    let old = shared.snapshot.load_full();
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.to_string().lines() {
                tracing::error!(
                    error = e,
                    "reload failed; keeping the running configuration"
                );
            }
            return false;
        }
    };
    warn_restart_only(&old.config, &config);
    if shared.delivery.is_none() && config.routes.iter().any(|r| r.mode == config::Mode::Async) {
        tracing::error!(
            "reload failed; keeping the running configuration: the new config has async routes but the queue was not opened at start (no async route then): restart to use them"
        );
        return false;
    }
    match Snapshot::build(config, old.generation + 1) {
        Ok(mut snap) => {
            snap.digest = crate::snapshot::file_digest(path);
            let generation = snap.generation;
            if let Some(engine) = &shared.delivery {
                engine.apply(&snap.config.targets);
            }
            shared.snapshot.store(Arc::new(snap));
            tracing::info!(generation, "configuration reloaded");
            true
        }
        Err(errors) => {
            let errors = config::ConfigErrors::new_unsorted(path.to_path_buf(), errors);
            for e in errors.to_string().lines() {
                tracing::error!(
                    error = e,
                    "reload failed; keeping the running configuration"
                );
            }
            false
        }
    }
}

fn warn_restart_only(old: &config::Config, new: &config::Config) {
    let addrs = |c: &config::Config| {
        c.listen
            .iter()
            .map(|l| (l.addr, l.tls.is_some()))
            .collect::<Vec<_>>()
    };
    let admin = |c: &config::Config| c.admin.as_ref().map(|a| a.addr);
    for (what, changed) in [
        ("listen", addrs(old) != addrs(new)),
        ("admin.addr", admin(old) != admin(new)),
        ("server", old.server != new.server),
        ("queue", old.queue != new.queue),
    ] {
        if changed {
            tracing::warn!(
                setting = what,
                "changed setting takes effect only after a restart"
            );
        }
    }
}

/// The config file and every certificate and key file it names.
fn watched_files(path: &Path, snap: &Snapshot) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    for l in &snap.config.listen {
        for ck in l.tls.iter().flatten() {
            files.push(ck.cert.clone());
            files.push(ck.key.clone());
        }
    }
    files
}

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f).ok().map(|m| {
                (
                    m.len(),
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    m.ino(),
                )
            })
        })
        .collect()
}
