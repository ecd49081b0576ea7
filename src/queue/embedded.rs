//! The embedded queue under `queue.embedded.path`: an append-only journal (see
//! [`journal`](super::journal)) where events become durable, and a SQLite database (WAL mode)
//! that holds the queryable state: events, deliveries, attempts, dedup keys.
//!
//! One **writer thread** owns the journal and the database's write connection. Each round it
//! takes the first waiting command and drains every other one already queued (up to
//! [`MAX_BATCH`]). New events are checked against the dedup keys, written to the journal as
//! one `write` and synced once, and only then answered: an event gets its 202 once a sync
//! covers it, and concurrent requests share that sync (group commit). A failed write or sync
//! fails every event in the batch and is cut back: never a 202 for an event that is not
//! stored, never half an event stored.
//!
//! Then, with the senders already answered, the same round applies the events, delivery
//! outcomes, replays and retention to the database in one transaction with
//! `synchronous=NORMAL`: nobody waits for that to reach the disk. The database records how far
//! into the journal it got in the same transaction, so after a crash (or a power loss that
//! took its last transactions) the journal from that point is applied again on start. Once the
//! database holds a whole journal segment durably (one synced commit), the segment is removed.
//! If a transaction fails (disk full), the events stay in the journal, the transaction is
//! tried again every [`INDEX_RETRY`] and new events are refused until it succeeds. Outcomes
//! recorded only in the database may be lost by a power cut; the delivery is then attempted
//! again (at-least-once), never skipped.
//!
//! Reads (listings, loading a body for a retry) use another connection; WAL lets them run
//! beside the writer. Each first waits until the writer has applied everything already
//! acknowledged, so a 202'd event is visible to the admin API at once. A lock file keeps a
//! second process from opening the same store.

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use super::{
    Appended, AttemptRecord, AttemptView, DeliveryState, DeliveryView, EventView, ListFilter,
    NewEvent, Pending, Purged, QueueError, ReplaySelection, Stats, StoredEvent,
    journal::{self, Journal, Position, sync_dir},
    now_ms, record, rfc3339,
};
use crate::config;

/// Most commands applied in one journal write or one transaction.
const MAX_BATCH: usize = 4096;

/// Most body bytes in one journal write; a batch stops growing past it.
const MAX_BATCH_BYTES: usize = 32 << 20;

/// The body bytes a command adds to a journal write.
fn cmd_bytes(c: &Cmd) -> usize {
    match c {
        Cmd::Append(e, _) => e.body.len(),
        _ => 0,
    }
}

/// The database file's name in the store folder.
const DB_FILE: &str = "hookrouter.sqlite3";

/// The journal's folder in the store folder.
const JOURNAL_DIR: &str = "journal";

/// Events applied from the journal per transaction when catching up on start.
const RECOVERY_CHUNK: usize = 2000;

/// How long the writer waits before trying again a transaction that failed.
const INDEX_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// How soon a degraded database is rebuilt, and the longest wait between attempts when
/// rebuilds keep failing (the wait doubles after each).
const REBUILD_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
const REBUILD_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// The schema this build writes; a store with a higher one was written by a newer release.
const SCHEMA: i64 = 1;

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    route TEXT NOT NULL,
    provider_id TEXT,
    type TEXT,
    version TEXT,
    received_ms INTEGER NOT NULL,
    query TEXT,
    format INTEGER NOT NULL,
    headers BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_route ON events (route, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT NOT NULL,
    target TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    round_attempts INTEGER NOT NULL,
    round_started_ms INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (event_id, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, target);
CREATE TABLE IF NOT EXISTS attempts (
    event_id TEXT NOT NULL,
    target TEXT NOT NULL,
    n INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    status INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (event_id, target, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup (
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (route, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup (expires_ms);
";

/// What the writer thread does.
enum Cmd {
    Append(Box<NewEvent>, oneshot::Sender<Result<Appended, QueueError>>),
    /// Events the journal holds durably (up to `Position`), for the database.
    Index(Vec<NewEvent>, Position),
    Record(Box<AttemptRecord>),
    Replay(
        ReplaySelection,
        oneshot::Sender<Result<Vec<Pending>, QueueError>>,
    ),
    Purge(Retention, oneshot::Sender<Result<Purged, QueueError>>),
    /// Answered once everything sent before it is applied: `true`, or `false` when it cannot
    /// be for now (the database refuses writes and events wait in the journal).
    Flush(oneshot::Sender<bool>),
}

/// How long finished events are kept, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    pub(crate) delivered_ms: i64,
    pub(crate) dead_ms: i64,
}

impl Retention {
    pub(crate) fn of(settings: &config::Embedded) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Retention {
            delivered_ms: ms(settings.retention),
            dead_ms: ms(settings.dead_retention),
        }
    }
}

/// The embedded store.
pub(crate) struct Embedded {
    writer: mpsc::Sender<Cmd>,
    reader: Arc<Mutex<Connection>>,
    dir: PathBuf,
    settings: config::Embedded,
    page_size: u64,
    /// Whether the database is trusted (see [`Embedded::degraded`]).
    health: Arc<Health>,
    /// Held for the store's lifetime: the lock that keeps other processes out.
    _lock: File,
    /// Dropped with the store: tells the checkpoint thread to stop.
    _checkpointer: mpsc::Sender<()>,
}

impl Embedded {
    /// Opens (or creates) the store in `settings.path`.
    pub(crate) fn open(settings: &config::Embedded) -> anyhow::Result<Embedded> {
        use anyhow::Context as _;
        let dir = settings.path.clone();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the queue folder {}", dir.display()))?;
        let lock_path = dir.join("hookrouter.lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            anyhow::bail!(
                "the queue folder {} is in use by another hookrouter process",
                dir.display()
            );
        }
        let db = dir.join(DB_FILE);
        // A rebuild that a crash interrupted after its copy was complete is finished; one the
        // degraded store never got to is done now (see `rebuild_database`).
        if finish_rebuild(&dir)? {
            tracing::warn!("queue database: a rebuilt copy left by the last run put in place");
        }
        remove_if_there(&dir.join(REBUILD_PART))
            .context("cannot remove a partial copy of the queue database")?;
        let health = Arc::new(Health {
            degraded: AtomicBool::new(dir.join(DEGRADED_FILE).exists()),
            dir: dir.clone(),
        });
        if health.degraded() {
            tracing::warn!(
                "queue database: the last run lost a write and did not rebuild it; rebuilding into a new file"
            );
            rebuild_database(&dir).context("cannot rebuild the degraded queue database")?;
        }
        let journal_dir = dir.join(JOURNAL_DIR);
        let opened = (|| -> anyhow::Result<(Connection, u64, u64)> {
            let (mut conn, page_size) = open_writer(&db, settings)?;
            std::fs::create_dir_all(&journal_dir)
                .with_context(|| format!("cannot create {}", journal_dir.display()))?;
            // The journal folder's own entry must survive a power cut before anything is in it.
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync {}", dir.display()))?;
            let last = recover(&mut conn, &journal_dir)?;
            Ok((conn, page_size, last))
        })();
        let (conn, page_size, last) = match opened {
            Ok(v) => v,
            Err(e) => {
                // The next start must not trust a sync that succeeds only because this one's
                // error was already reported: it rebuilds instead.
                if lost_write_in(&e) {
                    health.degrade("start", &format!("{e:#}"));
                }
                return Err(e);
            }
        };
        health
            .restored()
            .context("cannot clear the queue's degraded state")?;
        let segment_bytes = (settings.max_size / 16).clamp(64 << 10, 64 << 20);
        let journal =
            Journal::create(&journal_dir, last + 1, segment_bytes).with_context(|| {
                format!(
                    "cannot start a journal segment in {}",
                    journal_dir.display()
                )
            })?;
        let reader = Arc::new(Mutex::new(open_reader(&db)?));
        let checkpoint = Arc::new(Mutex::new(open_other(&db)?));
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        thread::Builder::new()
            .name("queue-checkpoint".into())
            .spawn({
                let wal = wal_path(&dir);
                let (conn, health) = (checkpoint.clone(), health.clone());
                move || checkpointer(&conn, &wal, &health, &stop_rx)
            })
            .context("cannot start the queue checkpoint thread")?;
        let journal_bytes = journal::size(&journal_dir);
        let writer = Writer {
            conn,
            journal,
            journal_dir,
            kept_from: last + 1,
            backlog: Vec::new(),
            page_size,
            journal_bytes,
            frames: Vec::with_capacity(1 << 20),
            settings: settings.clone(),
            segment_bytes,
            reader: reader.clone(),
            checkpoint,
            health: health.clone(),
        };
        thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer.run(rx))
            .context("cannot start the queue writer thread")?;
        Ok(Embedded {
            writer: tx,
            reader,
            dir,
            settings: settings.clone(),
            page_size,
            health,
            _lock: lock,
            _checkpointer: stop_tx,
        })
    }

    /// Whether the database lost a write it was given (a failed sync) and is not trusted
    /// until it is rebuilt: checkpoints and journal cleanup are paused meanwhile.
    pub(crate) fn degraded(&self) -> bool {
        self.health.degraded()
    }

    /// The retention the store was opened with.
    pub(crate) fn retention(&self) -> Retention {
        Retention::of(&self.settings)
    }

    pub(crate) async fn append(&self, event: NewEvent) -> Result<Appended, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Cmd::Append(Box::new(event), tx))
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    pub(crate) fn record(&self, attempt: AttemptRecord) {
        if self.writer.send(Cmd::Record(Box::new(attempt))).is_err() {
            tracing::warn!("queue closed: attempt not recorded (it will be repeated)");
        }
    }

    pub(crate) async fn replay(&self, sel: ReplaySelection) -> Result<Vec<Pending>, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Cmd::Replay(sel, tx))
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    pub(crate) async fn purge(&self, retention: Retention) -> Result<Purged, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Cmd::Purge(retention, tx))
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Runs `f` on the read connection off the async threads, once the database holds
    /// every event acknowledged so far.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Cmd::Flush(tx))
            .map_err(|_| QueueError::Closed)?;
        if !rx.await.map_err(|_| QueueError::Closed)? {
            // An answer now could miss acknowledged events (a delivery would take its event
            // for removed): the caller tries again later.
            return Err(QueueError::Unavailable(
                "the queue database is behind its journal (it cannot take writes); try again"
                    .into(),
            ));
        }
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| QueueError::Unavailable("reader poisoned".into()))?;
            f(&conn).map_err(unavailable)
        })
        .await
        .map_err(|_| QueueError::Closed)?
    }

    pub(crate) async fn pending(&self) -> Result<Vec<Pending>, QueueError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT event_id, target, attempts, round_attempts, round_started_ms, next_ms
                 FROM deliveries WHERE state = 0",
            )?;
            let rows = st.query_map([], pending_row)?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn load(&self, id: &str) -> Result<Option<StoredEvent>, QueueError> {
        let id = id.to_string();
        let row = self
            .read(move |c| {
                c.query_row(
                    "SELECT route, type, version, received_ms, query, format, headers, body
                     FROM events WHERE id = ?1",
                    [&id],
                    |r| {
                        Ok((
                            id.clone(),
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, Vec<u8>>(6)?,
                            r.get::<_, Vec<u8>>(7)?,
                        ))
                    },
                )
                .optional()
            })
            .await?;
        let Some((id, route, kind, version, received_ms, query, format, headers, body)) = row
        else {
            return Ok(None);
        };
        if format != record::FORMAT {
            return Err(QueueError::Unavailable(format!(
                "event {id} is in record format {format}, which this build cannot read"
            )));
        }
        let headers = record::decode_headers(&headers).ok_or_else(|| {
            QueueError::Unavailable(format!("event {id} has unreadable stored headers"))
        })?;
        Ok(Some(StoredEvent {
            id,
            route,
            kind,
            version,
            received_ms,
            query,
            headers,
            body: Bytes::from(body),
        }))
    }

    pub(crate) async fn events(&self, filter: ListFilter) -> Result<Vec<EventView>, QueueError> {
        self.read(move |c| list(c, &filter, false)).await
    }

    pub(crate) async fn dead_letters(
        &self,
        filter: ListFilter,
    ) -> Result<Vec<EventView>, QueueError> {
        self.read(move |c| list(c, &filter, true)).await
    }

    pub(crate) async fn event(&self, id: &str) -> Result<Option<EventView>, QueueError> {
        let id = id.to_string();
        self.read(move |c| {
            let Some(mut view) = c
                .query_row(&format!("{EVENT_COLUMNS} WHERE id = ?1"), [&id], event_row)
                .optional()?
            else {
                return Ok(None);
            };
            view.deliveries = deliveries_of(c, &view.id)?;
            let mut st = c.prepare_cached(
                "SELECT target, n, at_ms, status, latency_ms, error FROM attempts
                 WHERE event_id = ?1 ORDER BY at_ms, target, n",
            )?;
            let attempts = st
                .query_map([&id], |r| {
                    Ok(AttemptView {
                        target: r.get(0)?,
                        attempt: r.get(1)?,
                        at: rfc3339(r.get(2)?),
                        status: r.get(3)?,
                        latency_ms: r.get(4)?,
                        error: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            view.attempts = Some(attempts);
            Ok(Some(view))
        })
        .await
    }

    pub(crate) async fn gauges(&self) -> Result<(u64, Vec<(String, u64)>), QueueError> {
        let page_size = self.page_size;
        let dir = self.dir.clone();
        self.read(move |c| {
            let disk = on_disk(c, page_size, &dir)?;
            let mut st = c.prepare_cached(
                "SELECT target, count(*) FROM deliveries WHERE state = 2 GROUP BY target",
            )?;
            let dead = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, unsigned(r.get(1)?))))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((disk, dead))
        })
        .await
    }

    pub(crate) async fn stats(&self) -> Result<Stats, QueueError> {
        let page_size = self.page_size;
        let dir = self.dir.clone();
        let max_bytes = self.settings.max_size;
        let degraded = self.degraded();
        self.read(move |c| {
            let disk_bytes = on_disk(c, page_size, &dir)?;
            let events = unsigned(c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?);
            let mut st = c.prepare(
                "SELECT state, count(*) FROM deliveries WHERE state <> 1 GROUP BY state",
            )?;
            let mut stats = Stats {
                disk_bytes,
                max_bytes,
                events,
                degraded,
                ..Stats::default()
            };
            for row in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, unsigned(r.get(1)?))))? {
                let (state, n) = row?;
                match DeliveryState::from_code(state) {
                    DeliveryState::Pending => stats.pending = n,
                    DeliveryState::Dead => stats.dead = n,
                    DeliveryState::Delivered => {}
                }
            }
            Ok(stats)
        })
        .await
    }
}

/// Bytes the store in `dir` takes on disk: the database, its write-ahead log, the journal.
fn on_disk(c: &Connection, page_size: u64, dir: &Path) -> rusqlite::Result<u64> {
    let pages = unsigned(c.query_row("PRAGMA page_count", [], |r| r.get(0))?);
    let wal = std::fs::metadata(wal_path(dir)).map_or(0, |m| m.len());
    Ok(pages * page_size + wal + journal::size(&dir.join(JOURNAL_DIR)))
}

/// SQLite integers are signed; counts and sizes never are.
fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn unavailable(e: rusqlite::Error) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// How often the checkpoint thread copies the journal into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The journal size past which a checkpoint may briefly hold the writer to start it over.
const WAL_RESTART_BYTES: u64 = 32 << 20;

/// Copies committed journal pages into the database file on its own connection, so commits
/// do not wait for checkpoints (the writer connection's automatic ones are off). A passive
/// checkpoint neither blocks nor waits for the writer. Under continuous writes the journal
/// would never be fully copied and so never start over: once it passes
/// [`WAL_RESTART_BYTES`], a restarting checkpoint waits for the writer's current commit,
/// copies the rest and lets the next commit start the journal from its beginning, keeping its
/// size bounded.
///
/// A checkpoint that fails to write or sync leaves the store degraded (see
/// [`Health::degrade`]), and none runs until the writer has rebuilt the database: after a failed
/// sync, a later one can succeed without the lost pages ever reaching the disk, and the
/// write-ahead log that still holds them must not start over.
fn checkpointer(conn: &Mutex<Connection>, wal: &Path, health: &Health, stop: &mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if health.degraded() {
            continue;
        }
        let big = std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_RESTART_BYTES);
        let sql = if big {
            "PRAGMA wal_checkpoint(RESTART)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        let Ok(conn) = conn.lock() else { return };
        // Checked again under the lock: a rebuild may have just finished or begun.
        if health.degraded() {
            continue;
        }
        match conn.query_row(sql, [], |_| Ok(())) {
            Ok(()) => {}
            Err(e) if lost_write(&e) => health.degrade("checkpoint", &e),
            Err(e) => tracing::debug!(error = %e, "queue checkpoint skipped"),
        }
    }
}

/// Whether `e` says the database file or its write-ahead log may not hold what SQLite wrote:
/// an I/O error (a failed `write` or sync) or corruption. A full disk is not one: the write
/// was refused and nothing was lost.
fn lost_write(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::DatabaseCorrupt
                | rusqlite::ErrorCode::NotADatabase
        )
    )
}

/// [`lost_write`] anywhere in an error's chain.
fn lost_write_in(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<rusqlite::Error>())
        .any(lost_write)
}

/// Whether the database is trusted, shared by the writer and the checkpointer.
struct Health {
    degraded: AtomicBool,
    /// The store folder, where [`DEGRADED_FILE`] goes.
    dir: PathBuf,
}

impl Health {
    fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Marks the store degraded after a lost write in `during`: logs once per episode and
    /// leaves [`DEGRADED_FILE`], so that a start after a crash rebuilds the database too.
    fn degrade(&self, during: &str, e: &dyn std::fmt::Display) {
        if self.degraded.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::error!(
            error = %e,
            during,
            "queue database lost a write (the disk failed to store it): checkpoints and journal cleanup are paused until the database is rebuilt into a new file (tried from 2s on, backing off); events are still accepted (the journal holds them)"
        );
        let marked = File::create(self.dir.join(DEGRADED_FILE))
            .and_then(|f| f.sync_all())
            .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = marked {
            tracing::warn!(error = %e, "cannot record the degraded state on disk (a start before the rebuild would not know of it)");
        }
    }

    /// Clears the state after a rebuild.
    fn restored(&self) -> std::io::Result<()> {
        if remove_if_there(&self.dir.join(DEGRADED_FILE))? {
            sync_dir(&self.dir)?;
        }
        self.degraded.store(false, Ordering::Relaxed);
        Ok(())
    }
}

/// The database's write-ahead log in the store folder `dir`.
fn wal_path(dir: &Path) -> PathBuf {
    dir.join(format!("{DB_FILE}-wal"))
}

/// Removes a file if it exists; whether it did.
fn remove_if_there(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Left in the store folder while the database is degraded.
const DEGRADED_FILE: &str = "degraded";

/// A rebuilt copy of the database being written, and once complete and synced.
const REBUILD_PART: &str = "hookrouter.sqlite3.rebuild-part";
const REBUILT: &str = "hookrouter.sqlite3.rebuilt";

/// Copies the database (with what its write-ahead log holds) into a new file and puts the
/// copy in its place; the old write-ahead log goes with the old file.
///
/// A new file because rewriting the old one in place is not enough: after a failed
/// writeback, Linux may report the next sync of the same pages as a success although they
/// never reached the disk (the error is reported once), and ext4 can leave the blocks of a
/// failed write marked "unwritten", so that they read back as zeros whatever is written
/// there later. A fresh file gets fresh blocks, and its first sync tells the truth.
///
/// Crash-safe: the copy is written under [`REBUILD_PART`], synced and renamed to
/// [`REBUILT`]; only then are the old log and file replaced. A start that finds
/// [`REBUILT`] finishes the switch ([`finish_rebuild`]); a leftover part is removed.
fn rebuild_database(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // A complete copy that an earlier attempt could not put in place is the newest state:
    // the old files may already have lost their write-ahead log.
    if finish_rebuild(dir)? {
        return Ok(());
    }
    let part = dir.join(REBUILD_PART);
    remove_if_there(&part).with_context(|| format!("cannot remove {}", part.display()))?;
    {
        let conn = open_other(&dir.join(DB_FILE))?;
        let path = part
            .to_str()
            .context("the queue folder's path is not UTF-8")?;
        conn.execute("VACUUM INTO ?1", [path])
            .context("cannot copy the queue database")?;
    }
    File::open(&part)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", part.display()))?;
    std::fs::rename(&part, dir.join(REBUILT))
        .and_then(|()| sync_dir(dir))
        .context("cannot keep the copy of the queue database")?;
    finish_rebuild(dir)?;
    Ok(())
}

/// Writes and syncs a small new file in `dir`, then removes it: whether the disk takes
/// writes again, before a rebuild writes a whole copy of the database.
fn probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.join("rebuild-probe");
    let written = File::create(&path).and_then(|mut f| {
        f.write_all(&[0x5a; 64 << 10])?;
        f.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

/// Puts a complete rebuilt copy in the database's place, if there is one.
fn finish_rebuild(dir: &Path) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let rebuilt = dir.join(REBUILT);
    if !rebuilt.exists() {
        return Ok(false);
    }
    for old in [wal_path(dir), dir.join(format!("{DB_FILE}-shm"))] {
        remove_if_there(&old)
            .with_context(|| format!("cannot remove the old {}", old.display()))?;
    }
    // The old log is gone for good before the copy takes the database's name: a power cut
    // must never leave it beside the new file, whose pages it does not describe.
    sync_dir(dir).context("cannot sync the queue folder")?;
    std::fs::rename(&rebuilt, dir.join(DB_FILE))
        .and_then(|()| sync_dir(dir))
        .context("cannot put the rebuilt queue database in place")?;
    Ok(true)
}

/// Opens the database for the writer: pragmas and schema; returns it and the page size.
fn open_writer(db: &Path, settings: &config::Embedded) -> anyhow::Result<(Connection, u64)> {
    use anyhow::Context as _;
    let mut conn = open_other(db)?;
    let page_size = setup(&mut conn, settings)
        .with_context(|| format!("cannot prepare the queue database {}", db.display()))?;
    Ok((conn, page_size))
}

/// Opens the read-only connection for listings and loads.
fn open_reader(db: &Path) -> anyhow::Result<Connection> {
    use anyhow::Context as _;
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the queue database {}", db.display()))?;
    no_checkpoint_on_close(&c)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(c)
}

/// Opens a read-write connection (the writer's, the checkpointer's).
fn open_other(db: &Path) -> anyhow::Result<Connection> {
    use anyhow::Context as _;
    let c = Connection::open(db)
        .with_context(|| format!("cannot open the queue database {}", db.display()))?;
    no_checkpoint_on_close(&c)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(c)
}

/// The last connection to close would otherwise checkpoint and remove the write-ahead log,
/// trusting a sync that may succeed after an earlier one failed; the log stays, and the next
/// open rewrites the database from it (see [`recover`]).
fn no_checkpoint_on_close(c: &Connection) -> rusqlite::Result<()> {
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map(drop)
}

/// Pragmas and schema; returns the page size.
fn setup(conn: &mut Connection, settings: &config::Embedded) -> anyhow::Result<u64> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        anyhow::bail!("the database cannot use write-ahead logging (got `{mode}`)");
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA cache_size = -65536;",
    )?;
    let page_size = unsigned(conn.query_row("PRAGMA page_size", [], |r| r.get(0))?);
    let max_pages = (settings.max_size / page_size.max(512)).max(64);
    let _: i64 = conn.query_row(&format!("PRAGMA max_page_count = {max_pages}"), [], |r| {
        r.get(0)
    })?;
    conn.execute_batch(SCHEMA_SQL)?;
    let found: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match found {
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                [SCHEMA],
            )?;
        }
        Some(v) if v > SCHEMA => anyhow::bail!(
            "the store was written by a newer hookrouter (schema {v}; this build reads {SCHEMA})"
        ),
        Some(_) => {}
    }
    Ok(page_size)
}

enum Reply {
    Append(oneshot::Sender<Result<Appended, QueueError>>),
    Replay(
        oneshot::Sender<Result<Vec<Pending>, QueueError>>,
        Vec<Pending>,
    ),
    Purge(oneshot::Sender<Result<Purged, QueueError>>, Purged),
    Flush(oneshot::Sender<bool>),
    None,
}

impl Reply {
    fn fail(self, why: &str) {
        let e = || QueueError::Unavailable(why.to_string());
        match self {
            Reply::Replay(tx, _) => drop(tx.send(Err(e()))),
            Reply::Purge(tx, _) => drop(tx.send(Err(e()))),
            Reply::Flush(tx) => drop(tx.send(false)),
            Reply::Append(tx) => drop(tx.send(Err(e()))),
            Reply::None => {}
        }
    }

    fn send(self) {
        match self {
            Reply::Replay(tx, v) => drop(tx.send(Ok(v))),
            Reply::Purge(tx, v) => drop(tx.send(Ok(v))),
            Reply::Flush(tx) => drop(tx.send(true)),
            // Appends are answered by the journal step, never here.
            Reply::Append(_) | Reply::None => {}
        }
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    journal: Journal,
    journal_dir: PathBuf,
    /// The lowest journal segment that may still exist.
    kept_from: u64,
    /// Journal batches and outcomes a failed transaction could not apply, in order; tried
    /// again every [`INDEX_RETRY`]. While any are held, new events are refused.
    backlog: Vec<Cmd>,
    /// The database's page size, and the journal's bytes on disk (kept as segments are
    /// written and removed, so the `max_size` check of each batch lists no folder).
    page_size: u64,
    journal_bytes: u64,
    /// Reused buffer for a batch's journal records.
    frames: Vec<u8>,
    /// The store's settings: `max_size`, and what a rebuild needs to open the database again.
    settings: config::Embedded,
    segment_bytes: u64,
    /// The other connections, closed and opened again by a rebuild.
    reader: Arc<Mutex<Connection>>,
    checkpoint: Arc<Mutex<Connection>>,
    /// Degraded after a lost write until a rebuild succeeds.
    health: Arc<Health>,
}

impl Writer {
    /// Works until every sender is gone.
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        use std::time::Instant;
        let mut batch = Vec::with_capacity(256);
        // When held-back work is tried again, and when a degraded database is rebuilt:
        // deadlines, so steady traffic (which never leaves the channel idle for a whole
        // interval) cannot put them off for ever.
        let mut retry_at = Instant::now();
        let mut rebuild_at = Instant::now() + REBUILD_EVERY;
        // Doubles after each failed rebuild, up to `REBUILD_MAX`: a rebuild copies the whole
        // database.
        let mut rebuild_every = REBUILD_EVERY;
        loop {
            let degraded = self.health.degraded();
            if !degraded {
                rebuild_every = REBUILD_EVERY;
                rebuild_at = Instant::now() + rebuild_every;
            } else if Instant::now() >= rebuild_at {
                if !self.rebuild() {
                    rebuild_every = (rebuild_every * 2).min(REBUILD_MAX);
                }
                rebuild_at = Instant::now() + rebuild_every;
                continue;
            }
            if !self.backlog.is_empty() && Instant::now() >= retry_at {
                let held = std::mem::take(&mut self.backlog);
                self.commit(held);
                if self.backlog.is_empty() {
                    tracing::info!("queue database writable again; accepting events");
                }
                retry_at = Instant::now() + INDEX_RETRY;
                continue;
            }
            let wake = [
                (!self.backlog.is_empty()).then_some(retry_at),
                degraded.then_some(rebuild_at),
            ]
            .into_iter()
            .flatten()
            .min();
            let first = match wake {
                // Idle, yet woken now and then: the checkpointer may find the database
                // degraded while no command comes.
                None => match rx.recv_timeout(REBUILD_EVERY) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            let mut bytes = cmd_bytes(&first);
            batch.push(first);
            // Bounded in commands and in bytes: one batch is one write and one allocation.
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(c) => {
                        bytes += cmd_bytes(&c);
                        batch.push(c);
                    }
                    Err(_) => break,
                }
            }
            let was_held = !self.backlog.is_empty();
            self.step(std::mem::take(&mut batch));
            if !was_held && !self.backlog.is_empty() {
                retry_at = Instant::now() + INDEX_RETRY;
            }
        }
    }

    /// Rebuilds a degraded database: every connection is closed (the other threads wait on
    /// their locks meanwhile), the database is copied into a new file that takes its place
    /// ([`rebuild_database`]), and it is opened again as on a start: the journal after its
    /// position is applied and made durable, then journal segments go and a new one starts.
    /// Whether it succeeded; if any step fails, the store stays degraded and this is tried
    /// again later (see [`REBUILD_EVERY`]).
    fn rebuild(&mut self) -> bool {
        if let Err(e) = probe(&self.health.dir) {
            tracing::debug!(error = %e, "queue database not rebuilt yet: the disk still fails a small synced write");
            return false;
        }
        let (Ok(mut checkpoint), Ok(mut reader)) = (self.checkpoint.lock(), self.reader.lock())
        else {
            return false;
        };
        // Stand-ins while the files are closed: with no tables, anything sent to them
        // fails (and events are refused) until the database is open again.
        let closed = Connection::open_in_memory;
        let (Ok(a), Ok(b), Ok(c)) = (closed(), closed(), closed()) else {
            return false;
        };
        drop(std::mem::replace(&mut *checkpoint, a));
        drop(std::mem::replace(&mut *reader, b));
        drop(std::mem::replace(&mut self.conn, c));
        let copied = rebuild_database(&self.health.dir);
        if self.health.dir.join(REBUILT).exists() {
            // The copy is complete but not in place, and the old files may be half replaced:
            // opening them could read the database without its write-ahead log. The stand-ins
            // stay (events are refused) until the next attempt finishes the switch.
            tracing::error!(
                error = %copied.err().map(|e| format!("{e:#}")).unwrap_or_default(),
                "cannot put the rebuilt queue database in place; refusing events and retrying"
            );
            return false;
        }
        let reopened = (|| -> anyhow::Result<()> {
            let db = self.health.dir.join(DB_FILE);
            let (conn, _) = open_writer(&db, &self.settings)?;
            self.conn = conn;
            *reader = open_reader(&db)?;
            *checkpoint = open_other(&db)?;
            Ok(())
        })();
        if let Err(e) = reopened {
            tracing::error!(error = %format!("{e:#}"), "cannot open the queue database again; retrying");
            return false;
        }
        let rebuilt = copied.and_then(|()| {
            let recovered = recover(&mut self.conn, &self.journal_dir);
            // Applied segments are removed, the one being written among them: whatever
            // happens next, nothing more is appended to it.
            self.journal.retire();
            let last = recovered?;
            self.journal = Journal::create(&self.journal_dir, last + 1, self.segment_bytes)?;
            self.kept_from = last + 1;
            self.health.restored()?;
            Ok(())
        });
        self.journal_bytes = journal::size(&self.journal_dir);
        match rebuilt {
            Ok(()) => {
                tracing::info!(
                    "queue database rebuilt into a new file and synced; checkpoints and journal cleanup resume"
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    error = %format!("{e:#}"),
                    "queue database not rebuilt yet (the disk still fails?); retrying"
                );
                false
            }
        }
    }

    /// One round: the batch's new events into the journal with one write and one sync, the
    /// answers to their senders, then one database transaction for everything.
    fn step(&mut self, cmds: Vec<Cmd>) {
        let started = std::time::Instant::now();
        let held = !self.backlog.is_empty();
        let mut rest = Vec::with_capacity(cmds.len() + 1);
        let mut answers = Vec::new();
        let mut stored = Vec::new();
        let mut batch_keys: HashMap<(String, String), String> = HashMap::new();
        self.frames.clear();
        for cmd in cmds {
            let Cmd::Append(event, reply) = cmd else {
                rest.push(cmd);
                continue;
            };
            if held {
                answers.push((
                    reply,
                    Err(QueueError::Unavailable(
                        "the queue database cannot take writes; new events are refused until it can"
                            .into(),
                    )),
                ));
                continue;
            }
            match self.duplicate(&event, &batch_keys) {
                Err(e) => answers.push((reply, Err(unavailable(e)))),
                Ok(Some(id)) => answers.push((reply, Ok(Appended::Duplicate { id }))),
                Ok(None) => {
                    if let Some(key) = event
                        .dedup_key
                        .clone()
                        .filter(|_| event.dedup_window_ms > 0)
                    {
                        batch_keys.insert((event.route.clone(), key), event.id.clone());
                    }
                    journal::frame(&mut self.frames, |out| record::encode_event(&event, out));
                    answers.push((reply, Ok(Appended::Stored)));
                    stored.push(*event);
                }
            }
        }
        let mut failure = None;
        if !stored.is_empty() {
            let used = self.disk_bytes();
            if used.saturating_add(self.frames.len() as u64) > self.settings.max_size {
                failure = Some(format!(
                    "the queue is full: {used} bytes in use, max_size is {}",
                    self.settings.max_size
                ));
            } else {
                match self.journal.append(&self.frames) {
                    Ok(end) => {
                        self.journal_bytes += self.frames.len() as u64;
                        rest.insert(0, Cmd::Index(stored, end));
                    }
                    Err(e) => {
                        // Cut back or not, and maybe a new segment: count what is there now.
                        self.journal_bytes = journal::size(&self.journal_dir);
                        failure = Some(format!("journal write failed: {e}"));
                    }
                }
            }
        }
        let journal_us = started.elapsed().as_micros();
        match failure {
            Some(why) => {
                tracing::error!(error = %why, "queue write failed; nothing in this batch was stored");
                for (reply, _) in answers {
                    drop(reply.send(Err(QueueError::Unavailable(why.clone()))));
                }
            }
            None => {
                for (reply, answer) in answers {
                    drop(reply.send(answer));
                }
            }
        }
        if self.frames.capacity() > 8 << 20 {
            // Large bodies should not keep a large buffer alive between bursts.
            self.frames = Vec::with_capacity(1 << 20);
        }
        if held {
            // Behind a failed transaction: keep the order; answer reads now (what is held
            // back cannot be read until it applies) and let retention run, since freeing
            // space is what may unblock the rest.
            for cmd in rest {
                match cmd {
                    Cmd::Flush(tx) => drop(tx.send(false)),
                    purge @ Cmd::Purge(..) => self.commit(vec![purge]),
                    other => self.backlog.push(other),
                }
            }
        } else if !rest.is_empty() {
            self.commit(rest);
        }
        tracing::trace!(
            journal_us,
            total_us = started.elapsed().as_micros(),
            "queue batch"
        );
    }

    /// The id of the event accepted first, if `e` repeats one within its window.
    fn duplicate(
        &self,
        e: &NewEvent,
        batch_keys: &HashMap<(String, String), String>,
    ) -> rusqlite::Result<Option<String>> {
        let Some(key) = e.dedup_key.as_deref().filter(|_| e.dedup_window_ms > 0) else {
            return Ok(None);
        };
        if let Some(id) = batch_keys.get(&(e.route.clone(), key.to_string())) {
            return Ok(Some(id.clone()));
        }
        let seen: Option<(String, i64)> = self
            .conn
            .prepare_cached("SELECT event_id, expires_ms FROM dedup WHERE route = ?1 AND key = ?2")?
            .query_row(params![e.route, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(seen
            .filter(|(_, expires)| *expires > e.received_ms)
            .map(|(id, _)| id))
    }

    /// What counts against `max_size`: the database's pages in use (freed pages are reused,
    /// so retention makes room again) and the journal; while degraded, the write-ahead log.
    fn disk_bytes(&self) -> u64 {
        let pragma = |name: &str| -> u64 {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
                .map_or(0, unsigned)
        };
        let used = pragma("page_count").saturating_sub(pragma("freelist_count"));
        // No checkpoint empties the write-ahead log while the store is degraded: it grows
        // with every commit, and counts until the rebuild.
        let wal = if self.health.degraded() {
            std::fs::metadata(wal_path(&self.health.dir)).map_or(0, |m| m.len())
        } else {
            0
        };
        used * self.page_size + self.journal_bytes + wal
    }

    /// Applies `cmds` in one transaction. If it fails, journal batches and outcomes are
    /// held back to be tried again (new events are refused meanwhile); the rest fail.
    fn commit(&mut self, cmds: Vec<Cmd>) {
        let result = self.apply_all(&cmds);
        match result {
            Ok((values, indexed)) => {
                for (cmd, value) in cmds.into_iter().zip(values) {
                    cmd.reply(value).send();
                }
                if let Some(end) = indexed {
                    self.drop_applied_segments(end);
                }
            }
            Err(e) => {
                if lost_write(&e) {
                    self.health.degrade("commit", &e);
                }
                let why = e.to_string();
                let before = self.backlog.len();
                for cmd in cmds {
                    match cmd {
                        c @ (Cmd::Index(..) | Cmd::Record(_)) => self.backlog.push(c),
                        other => other.reply(Value::None).fail(&why),
                    }
                }
                if before == 0 && !self.backlog.is_empty() {
                    tracing::error!(
                        error = %why,
                        "queue write failed: the database cannot take the journal's events; refusing new events until it can"
                    );
                } else if self.backlog.len() == before {
                    tracing::error!(error = %why, "queue write failed");
                }
            }
        }
    }

    /// One transaction over `cmds`: each one's result, and the journal position the
    /// database now holds, if it took events.
    fn apply_all(&mut self, cmds: &[Cmd]) -> rusqlite::Result<(Vec<Value>, Option<Position>)> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut values = Vec::with_capacity(cmds.len());
        let mut indexed = None;
        for cmd in cmds {
            values.push(match cmd {
                Cmd::Index(events, end) => {
                    for e in events {
                        index_event(&tx, e)?;
                    }
                    indexed = Some(*end);
                    Value::None
                }
                Cmd::Record(a) => {
                    record_attempt(&tx, a)?;
                    Value::None
                }
                Cmd::Replay(sel, _) => Value::Replay(replay(&tx, sel)?),
                Cmd::Purge(retention, _) => Value::Purge(purge(&tx, *retention)?),
                Cmd::Flush(_) | Cmd::Append(..) => Value::None,
            });
        }
        if let Some(end) = indexed {
            set_position(&tx, end)?;
        }
        tx.commit()?;
        Ok((values, indexed))
    }

    /// Removes the journal segments before `end`'s once a synced commit makes the
    /// database's copy of them durable.
    ///
    /// Never while the store is degraded: a sync that succeeds after one failed proves
    /// nothing, and the journal is what the rebuild applies again.
    fn drop_applied_segments(&mut self, end: Position) {
        if end.segment <= self.kept_from || self.health.degraded() {
            return;
        }
        let removed = durable_position(&mut self.conn, end).and_then(|()| {
            journal::remove_before(&self.journal_dir, end.segment).map_err(anyhow::Error::from)
        });
        match removed {
            Ok(freed) => {
                self.journal_bytes = self.journal_bytes.saturating_sub(freed);
                tracing::debug!(
                    freed_bytes = freed,
                    "queue journal segments applied and removed"
                );
                self.kept_from = end.segment;
            }
            Err(e) if lost_write_in(&e) => self.health.degrade("sync", &e),
            Err(e) => tracing::warn!(error = %e, "queue journal segments kept for now"),
        }
    }
}

/// A command's result, before its reply is sent.
enum Value {
    Replay(Vec<Pending>),
    Purge(Purged),
    None,
}

impl Cmd {
    fn reply(self, value: Value) -> Reply {
        match (self, value) {
            (Cmd::Replay(_, tx), Value::Replay(v)) => Reply::Replay(tx, v),
            (Cmd::Replay(_, tx), _) => Reply::Replay(tx, Vec::new()),
            (Cmd::Purge(_, tx), Value::Purge(p)) => Reply::Purge(tx, p),
            (Cmd::Purge(_, tx), _) => Reply::Purge(tx, Purged::default()),
            (Cmd::Flush(tx), _) => Reply::Flush(tx),
            (Cmd::Append(_, tx), _) => Reply::Append(tx),
            (Cmd::Index(..) | Cmd::Record(_), _) => Reply::None,
        }
    }
}

/// Records in the database how far into the journal it holds.
fn set_position(tx: &Transaction<'_>, end: Position) -> rusqlite::Result<()> {
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "INSERT OR REPLACE INTO meta (key, value)
         VALUES ('journal_segment', ?1), ('journal_offset', ?2)",
    )?
    .execute(params![as_i64(end.segment), as_i64(end.offset)])?;
    Ok(())
}

/// Commits the journal position once with a sync, which makes every earlier commit durable
/// too (they precede it in the database's WAL).
fn durable_position(conn: &mut Connection, end: Position) -> anyhow::Result<()> {
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    let committed = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .and_then(|tx| {
            set_position(&tx, end)?;
            tx.commit()
        });
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    Ok(committed?)
}

/// Brings the database up to date with the journal (after a crash, the journal holds events
/// the database lost or never got), makes that durable and removes the applied segments.
/// Returns the highest segment number found.
///
/// Durable means written by this process and synced: a full checkpoint copies every page of
/// the write-ahead log into the database file anew (opening the database with no other
/// connection rebuilt the log's index, so nothing counts as copied) and syncs it, before the
/// journal is trusted to the database. After a run that lost a write this is not enough
/// (see [`rebuild_database`]), and [`Embedded::open`] rebuilds the database first.
fn recover(conn: &mut Connection, dir: &Path) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    let meta = |key: &str| -> anyhow::Result<u64> {
        let v: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        Ok(v.map_or(0, unsigned))
    };
    let from = Position {
        segment: meta("journal_segment")?,
        offset: meta("journal_offset")?,
    };
    let mut chunk: Vec<NewEvent> = Vec::with_capacity(RECOVERY_CHUNK);
    let mut last = from;
    let apply = |conn: &mut Connection, chunk: &mut Vec<NewEvent>, end: Position| {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for e in chunk.drain(..) {
            index_event(&tx, &e)?;
        }
        set_position(&tx, end)?;
        tx.commit()
    };
    let found = journal::read_from(dir, from, |payload, end| {
        let event = record::decode_event(payload).with_context(|| {
            format!(
                "journal record ending at segment {} offset {} is not an event this build can read",
                end.segment, end.offset
            )
        })?;
        chunk.push(event);
        last = end;
        if chunk.len() >= RECOVERY_CHUNK {
            apply(conn, &mut chunk, end).context("cannot apply the journal to the database")?;
        }
        Ok(())
    })?;
    if !chunk.is_empty() {
        apply(conn, &mut chunk, last).context("cannot apply the journal to the database")?;
    }
    if found.records > 0 {
        tracing::info!(
            events = found.records,
            "queue journal applied to the database on start"
        );
    }
    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .context("cannot write the queue database's log into it")?;
    if busy != 0 {
        anyhow::bail!(
            "cannot write the queue database's log into it: another connection has it open"
        );
    }
    durable_position(conn, last).context("cannot sync the queue database")?;
    journal::remove_before(dir, found.last_segment.saturating_add(1)).with_context(|| {
        format!(
            "cannot remove applied journal segments in {}",
            dir.display()
        )
    })?;
    // Segment numbers never go back, even when the folder lost its files: the database's
    // position must stay behind every segment written from now on.
    Ok(found.last_segment.max(from.segment))
}

/// Adds an event (already checked for duplicates and made durable in the journal) and its
/// pending deliveries. Applying the same event twice changes nothing.
fn index_event(tx: &Transaction<'_>, e: &NewEvent) -> rusqlite::Result<()> {
    if let Some(key) = e.dedup_key.as_deref().filter(|_| e.dedup_window_ms > 0) {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO dedup (route, key, event_id, expires_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            e.route,
            key,
            e.id,
            e.received_ms.saturating_add(e.dedup_window_ms)
        ])?;
    }
    let added = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events (id, route, provider_id, type, version, received_ms,
                                           query, format, headers, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            e.id,
            e.route,
            e.provider_id,
            e.kind,
            e.version,
            e.received_ms,
            e.query,
            record::FORMAT,
            &record::encode_headers(&e.headers)[..],
            &e.body[..],
        ])?;
    if added == 0 {
        return Ok(());
    }
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO deliveries (event_id, target, state, attempts, round_attempts,
                                           round_started_ms, next_ms, updated_ms)
         VALUES (?1, ?2, 0, 0, 0, ?3, ?3, ?3)",
    )?;
    for t in &e.targets {
        st.execute(params![e.id, t, e.received_ms])?;
    }
    Ok(())
}

fn record_attempt(tx: &Transaction<'_>, a: &AttemptRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE deliveries SET state = ?3, attempts = max(attempts, ?4), round_attempts = ?5,
             next_ms = ?6, last_status = ?7, last_error = ?8, updated_ms = ?9
         WHERE event_id = ?1 AND target = ?2",
    )?
    .execute(params![
        a.event_id,
        a.target,
        a.state.code(),
        a.n,
        a.round_n,
        a.next_ms,
        a.status,
        a.error,
        now_ms()
    ])?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO attempts (event_id, target, n, at_ms, status, latency_ms, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        a.event_id,
        a.target,
        a.n,
        a.at_ms,
        a.status,
        a.latency_ms,
        a.error
    ])?;
    Ok(())
}

fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pending> {
    Ok(Pending {
        event_id: r.get(0)?,
        target: r.get(1)?,
        attempts: r.get(2)?,
        round_attempts: r.get(3)?,
        round_started_ms: r.get(4)?,
        next_ms: r.get(5)?,
    })
}

fn replay(tx: &Transaction<'_>, sel: &ReplaySelection) -> rusqlite::Result<Vec<Pending>> {
    let now = now_ms();
    const SET: &str = "UPDATE deliveries SET state = 0, round_attempts = 0, round_started_ms = ?1,
                       next_ms = ?1, updated_ms = ?1";
    const RETURNING: &str =
        "RETURNING event_id, target, attempts, round_attempts, round_started_ms, next_ms";
    let rows = match sel {
        ReplaySelection::Event { id, target } => {
            let mut st = tx.prepare_cached(&format!(
                "{SET} WHERE event_id = ?2 AND (?3 IS NULL OR target = ?3) {RETURNING}"
            ))?;
            st.query_map(params![now, id, target], pending_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
        ReplaySelection::DeadLetters {
            event,
            target,
            route,
        } => {
            let mut st = tx.prepare_cached(&format!(
                "{SET} WHERE state = 2 AND (?2 IS NULL OR target = ?2)
                   AND (?3 IS NULL OR event_id IN (SELECT id FROM events WHERE route = ?3))
                   AND (?4 IS NULL OR event_id = ?4)
                 {RETURNING}"
            ))?;
            st.query_map(params![now, target, route, event], pending_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    Ok(rows)
}

/// Retention: events whose deliveries all succeeded (or that had none) after `retention`;
/// events with a dead letter after `dead_retention`; never an event with a pending delivery.
/// Expired dedup keys go too. Bounded work per pass so the writer is never held long.
fn purge(tx: &Transaction<'_>, retention: Retention) -> rusqlite::Result<Purged> {
    let now = now_ms();
    let ids: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM events e
             WHERE (e.received_ms < ?1
                    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state <> 1))
                OR (e.received_ms < ?2
                    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 0))
             LIMIT 20000",
        )?
        .query_map(params![now - retention.delivered_ms, now - retention.dead_ms], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in &ids {
        tx.prepare_cached("DELETE FROM attempts WHERE event_id = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM events WHERE id = ?1")?
            .execute([id])?;
    }
    let dedup_keys = tx
        .prepare_cached("DELETE FROM dedup WHERE expires_ms < ?1")?
        .execute([now])?;
    Ok(Purged {
        events: ids.len() as u64,
        dedup_keys: dedup_keys as u64,
    })
}

const EVENT_COLUMNS: &str =
    "SELECT id, route, type, provider_id, version, received_ms, length(body) FROM events";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventView> {
    Ok(EventView {
        id: r.get(0)?,
        route: r.get(1)?,
        kind: r.get(2)?,
        provider_id: r.get(3)?,
        version: r.get(4)?,
        received_at: rfc3339(r.get(5)?),
        body_bytes: usize::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
        deliveries: Vec::new(),
        attempts: None,
    })
}

fn deliveries_of(c: &Connection, id: &str) -> rusqlite::Result<Vec<DeliveryView>> {
    let mut st = c.prepare_cached(
        "SELECT target, state, attempts, next_ms, last_status, last_error FROM deliveries
         WHERE event_id = ?1 ORDER BY target",
    )?;
    st.query_map([id], |r| {
        let state = DeliveryState::from_code(r.get(1)?);
        Ok(DeliveryView {
            target: r.get(0)?,
            state,
            attempts: r.get(2)?,
            next_attempt_at: (state == DeliveryState::Pending)
                .then(|| rfc3339(r.get(3).unwrap_or(0))),
            last_status: r.get(4)?,
            last_error: r.get(5)?,
        })
    })?
    .collect()
}

/// Events newest first; `dead` keeps only those with a dead delivery (to the filter's target).
fn list(c: &Connection, f: &ListFilter, dead: bool) -> rusqlite::Result<Vec<EventView>> {
    let state_clause = if dead { "AND d.state = 2" } else { "" };
    let sql = format!(
        "{EVENT_COLUMNS} e
         WHERE (?1 IS NULL OR e.route = ?1)
           AND (?3 IS NULL OR e.seq < (SELECT seq FROM events WHERE id = ?3))
           AND ((?2 IS NULL AND {no_state}) OR EXISTS (SELECT 1 FROM deliveries d
                       WHERE d.event_id = e.id AND (?2 IS NULL OR d.target = ?2) {state_clause}))
         ORDER BY e.seq DESC LIMIT ?4",
        no_state = if dead { "0" } else { "1" },
    );
    let limit = i64::try_from(f.limit.clamp(1, 1000)).unwrap_or(100);
    let mut st = c.prepare(&sql)?;
    let mut views = st
        .query_map(params![f.route, f.target, f.before, limit], event_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for v in &mut views {
        v.deliveries = deliveries_of(c, &v.id)?;
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> NewEvent {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        NewEvent {
            id: format!("event-{n}"),
            route: "r".into(),
            dedup_key: Some(format!("id:evt_{n}")),
            dedup_window_ms: 60_000,
            provider_id: Some(format!("evt_{n}")),
            kind: Some("thing.happened".into()),
            version: None,
            received_ms: now_ms(),
            query: None,
            headers,
            body: Bytes::from(format!("{{\"id\":\"evt_{n}\"}}")),
            targets: vec!["a".into(), "b".into()],
        }
    }

    /// Writes `events` as one journal batch in segment `segment`, as the writer does.
    fn journal_batch(dir: &Path, segment: u64, events: &[NewEvent]) {
        let jdir = dir.join(JOURNAL_DIR);
        std::fs::create_dir_all(&jdir).expect("mkdir");
        let mut frames = Vec::new();
        for e in events {
            journal::frame(&mut frames, |out| record::encode_event(e, out));
        }
        Journal::create(&jdir, segment, 1 << 20)
            .expect("segment")
            .append(&frames)
            .expect("append");
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Opens the store, appends `events` and closes it once the database holds them (reads
    /// wait for the writer to apply what it acknowledged).
    fn store_events(settings: &config::Embedded, events: impl IntoIterator<Item = u32>) {
        runtime().block_on(async {
            let store = Embedded::open(settings).expect("open");
            for n in events {
                store.append(event(n)).await.expect("append");
            }
            store.stats().await.expect("flush");
        });
    }

    /// What a crash leaves when the database never got (or lost) a batch the journal holds:
    /// opening the store applies it, once, and removes the applied segment.
    #[test]
    fn events_only_in_the_journal_are_applied_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = config::Embedded::at(dir.path().to_path_buf());
        journal_batch(dir.path(), 1, &[event(1), event(2)]);
        // A torn record after them: a write the crash interrupted.
        let seg = dir.path().join(JOURNAL_DIR).join(format!("{:016}.log", 1));
        let mut torn = std::fs::read(&seg).expect("read");
        torn.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
        std::fs::write(&seg, torn).expect("write");
        runtime().block_on(async {
            let store = Embedded::open(&settings).expect("open");
            let mut pending = store.pending().await.expect("pending");
            pending.sort_by(|a, b| (&a.event_id, &a.target).cmp(&(&b.event_id, &b.target)));
            let got: Vec<_> = pending
                .iter()
                .map(|p| (p.event_id.as_str(), p.target.as_str()))
                .collect();
            assert_eq!(
                got,
                [
                    ("event-1", "a"),
                    ("event-1", "b"),
                    ("event-2", "a"),
                    ("event-2", "b")
                ]
            );
            let loaded = store.load("event-2").await.expect("load").expect("stored");
            assert_eq!(&loaded.body[..], b"{\"id\":\"evt_2\"}");
            // The dedup keys came along: a repeat is a duplicate.
            let again = store.append(event(1)).await.expect("append");
            assert_eq!(
                again,
                Appended::Duplicate {
                    id: "event-1".into()
                }
            );
        });
        let segments = journal::segments(&dir.path().join(JOURNAL_DIR)).expect("list");
        assert_eq!(segments, [2], "segment 1 applied and removed, 2 started");
        // Opening again applies nothing twice.
        runtime().block_on(async {
            let store = Embedded::open(&settings).expect("reopen");
            assert_eq!(store.pending().await.expect("pending").len(), 4);
            assert_eq!(store.stats().await.expect("stats").events, 2);
        });
    }

    /// The database's journal position names segment 5, but the folder lost its files (they
    /// were removed after recovery and the new segment never made it to disk): numbering goes
    /// on after 5, so what is written next is never skipped as "already applied".
    #[test]
    fn segment_numbers_never_go_back_behind_the_database_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = config::Embedded::at(dir.path().to_path_buf());
        // Nothing is left to land in the database after the edits below.
        store_events(&settings, [1]);
        let db = Connection::open(dir.path().join(DB_FILE)).expect("db");
        db.execute_batch(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('journal_segment', 5), ('journal_offset', 100)",
        )
        .expect("position");
        drop(db);
        let jdir = dir.path().join(JOURNAL_DIR);
        for n in journal::segments(&jdir).expect("list") {
            std::fs::remove_file(jdir.join(format!("{n:016}.log"))).expect("remove");
        }
        runtime().block_on(async {
            let store = Embedded::open(&settings).expect("reopen");
            store.append(event(2)).await.expect("append");
            store.stats().await.expect("flush");
        });
        assert_eq!(journal::segments(&jdir).expect("list"), [6]);
        // A crash before the database took event 2: the next open applies segment 6.
        let db = Connection::open(dir.path().join(DB_FILE)).expect("db");
        db.execute("DELETE FROM events WHERE id = 'event-2'", [])
            .expect("forget");
        db.execute_batch(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('journal_segment', 5), ('journal_offset', 100)",
        )
        .expect("position");
        drop(db);
        runtime().block_on(async {
            let store = Embedded::open(&settings).expect("reopen");
            assert!(store.load("event-2").await.expect("load").is_some());
        });
    }

    /// Appends answer only after the journal holds them; the database follows, and reads
    /// see every acknowledged event at once.
    #[test]
    fn acknowledged_events_are_in_the_journal_and_visible_to_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = config::Embedded::at(dir.path().to_path_buf());
        runtime().block_on(async {
            let store = Arc::new(Embedded::open(&settings).expect("open"));
            let mut tasks = Vec::new();
            for n in 0..50 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move { store.append(event(n)).await }));
            }
            for t in tasks {
                assert_eq!(t.await.expect("task").expect("append"), Appended::Stored);
            }
            assert_eq!(store.stats().await.expect("stats").events, 50);
            let again = store.append(event(7)).await.expect("append");
            assert!(matches!(again, Appended::Duplicate { .. }), "{again:?}");
        });
        // Everything acknowledged can be read back from the journal alone.
        let mut ids = Vec::new();
        journal::read_from(
            &dir.path().join(JOURNAL_DIR),
            Position::default(),
            |payload, _| {
                ids.push(record::decode_event(payload).expect("event").id);
                Ok(())
            },
        )
        .expect("read");
        ids.sort();
        let mut want: Vec<_> = (0..50).map(|n| format!("event-{n}")).collect();
        want.sort();
        assert_eq!(ids, want);
    }

    /// A failed sync or write, or corruption, means the files may not hold what SQLite
    /// wrote; a full disk refused the write and lost nothing.
    #[test]
    fn only_io_errors_and_corruption_are_lost_writes() {
        let err = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert!(lost_write(&err(rusqlite::ffi::SQLITE_IOERR_FSYNC)));
        assert!(lost_write(&err(rusqlite::ffi::SQLITE_IOERR_WRITE)));
        assert!(lost_write(&err(rusqlite::ffi::SQLITE_CORRUPT)));
        assert!(!lost_write(&err(rusqlite::ffi::SQLITE_FULL)));
        assert!(!lost_write(&err(rusqlite::ffi::SQLITE_BUSY)));
        let wrapped = anyhow::Error::from(err(rusqlite::ffi::SQLITE_IOERR_FSYNC)).context("sync");
        assert!(lost_write_in(&wrapped));
        assert!(!lost_write_in(&anyhow::anyhow!("something else")));
    }

    /// A run that lost a write and stopped before rebuilding leaves the mark: the next open
    /// copies the database into a new file, keeps every event and clears the mark.
    #[test]
    fn an_open_after_a_degraded_run_rebuilds_the_database_into_a_new_file() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = config::Embedded::at(dir.path().to_path_buf());
        store_events(&settings, 0..20);
        let inode = |p: &Path| std::fs::metadata(p).expect("metadata").ino();
        let db = dir.path().join(DB_FILE);
        let before = inode(&db);
        std::fs::write(dir.path().join(DEGRADED_FILE), b"").expect("mark");
        runtime().block_on(async {
            let store = Embedded::open(&settings).expect("reopen");
            assert!(!store.degraded());
            assert_eq!(store.stats().await.expect("stats").events, 20);
            assert_eq!(store.pending().await.expect("pending").len(), 40);
        });
        assert_ne!(inode(&db), before, "the database is a new file");
        assert!(!dir.path().join(DEGRADED_FILE).exists(), "mark cleared");
        assert!(!dir.path().join(REBUILT).exists());
    }

    /// A crash after the rebuilt copy was complete but before it replaced the database: the
    /// next open puts it in place (dropping the old write-ahead log) rather than the old file.
    #[test]
    fn a_complete_rebuilt_copy_left_by_a_crash_is_put_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = config::Embedded::at(dir.path().to_path_buf());
        store_events(&settings, [1]);
        let copy = dir.path().join(REBUILT);
        // A complete copy, then what the old file has and the copy does not: event 1 gone.
        let copy_then_forget = || {
            let db = Connection::open(dir.path().join(DB_FILE)).expect("db");
            db.execute("VACUUM INTO ?1", [copy.to_str().expect("utf-8")])
                .expect("copy");
            db.execute("DELETE FROM events WHERE id = 'event-1'", [])
                .expect("delete");
        };
        copy_then_forget();
        // A half-written copy from an attempt before is no rebuild.
        std::fs::write(dir.path().join(REBUILD_PART), b"torn").expect("part");
        runtime().block_on(async {
            let store = Embedded::open(&settings).expect("reopen");
            assert!(store.load("event-1").await.expect("load").is_some());
        });
        assert!(!copy.exists());
        assert!(
            !dir.path().join(REBUILD_PART).exists(),
            "partial copy removed"
        );

        // A rebuild that finds a complete copy not yet in place (an earlier attempt failed
        // to switch) puts that copy in place rather than copying the old files again.
        copy_then_forget();
        rebuild_database(dir.path()).expect("rebuild");
        let db = Connection::open(dir.path().join(DB_FILE)).expect("db");
        let kept: i64 = db
            .query_row(
                "SELECT count(*) FROM events WHERE id = 'event-1'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(kept, 1, "the pending copy was put in place");
        assert!(!copy.exists());
    }

    /// A block the disk lost inside a record's frame (zeros from the third byte of its
    /// length on) must not make the reader take bytes of that record's body for a record: the
    /// body here holds a framed event with a valid checksum where the shortened length would
    /// point. Reading stops at the damaged record; nothing from inside a body is applied.
    #[test]
    fn a_block_lost_inside_a_frame_never_turns_a_body_into_an_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = config::Embedded::at(dir.path().to_path_buf());
        let encoded_len = |e: &NewEvent| {
            let mut v = Vec::new();
            record::encode_event(e, &mut v);
            v.len()
        };
        let mut forged = event(666);
        forged.id = "forged-1".into();
        forged.dedup_key = None;
        forged.targets = vec!["a".into()];
        forged.body = Bytes::from_static(b"{\"transfer\":1000000}");
        let mut forged_frame = Vec::new();
        journal::frame(&mut forged_frame, |o| record::encode_event(&forged, o));
        // Event 1 pads the file so that event 2's frame starts at offset 4094: the lost block
        // (4096..8192) begins at the third byte of event 2's length.
        let mut a = event(1);
        let overhead = encoded_len(&a) - a.body.len();
        a.body = Bytes::from(vec![b' '; 4094 - 8 - overhead]);
        let mut b = event(2);
        b.body = Bytes::new();
        // Event 2's payload is 0x12000 bytes; with its high bytes zeroed the length reads
        // 0x2000, which lands inside its body, where the forged frame sits.
        let total = 0x12000_usize;
        let mut body = vec![b'x'; total - encoded_len(&b)];
        let tail: usize = 4 + b.targets.iter().map(|t| 4 + t.len()).sum::<usize>();
        let body_start = total - tail - body.len();
        let at = 0x2000_usize - body_start;
        body[at..at + forged_frame.len()].copy_from_slice(&forged_frame);
        b.body = Bytes::from(body);
        journal_batch(dir.path(), 1, &[a, b, event(3)]);
        let seg = dir.path().join(JOURNAL_DIR).join(format!("{:016}.log", 1));
        let mut data = std::fs::read(&seg).expect("read");
        data[4096..8192].fill(0);
        std::fs::write(&seg, &data).expect("write");
        runtime().block_on(async {
            let store = Embedded::open(&settings).expect("open");
            let ids: Vec<_> = store
                .pending()
                .await
                .expect("pending")
                .into_iter()
                .map(|p| p.event_id)
                .collect();
            assert!(
                !ids.iter().any(|id| id == "forged-1"),
                "a record that was never written as one was applied: {ids:?}"
            );
            assert!(ids.iter().any(|id| id == "event-1"), "{ids:?}");
        });
    }
}
