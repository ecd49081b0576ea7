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
    sync::{Arc, Mutex, mpsc},
    thread,
};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use super::{
    Appended, AttemptRecord, AttemptView, DeliveryState, DeliveryView, EventView, ListFilter,
    NewEvent, Pending, Purged, QueueError, ReplaySelection, Stats, StoredEvent,
    journal::{self, Journal, Position},
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
        let mut conn = Connection::open(&db)
            .with_context(|| format!("cannot open the queue database {}", db.display()))?;
        let page_size = setup(&mut conn, settings)
            .with_context(|| format!("cannot prepare the queue database {}", db.display()))?;
        let journal_dir = dir.join(JOURNAL_DIR);
        std::fs::create_dir_all(&journal_dir)
            .with_context(|| format!("cannot create {}", journal_dir.display()))?;
        // The journal folder's own entry must survive a power cut before anything is in it.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
        let last = recover(&mut conn, &journal_dir)?;
        let segment_bytes = (settings.max_size / 16).clamp(64 << 10, 64 << 20);
        let journal =
            Journal::create(&journal_dir, last + 1, segment_bytes).with_context(|| {
                format!(
                    "cannot start a journal segment in {}",
                    journal_dir.display()
                )
            })?;
        let open_reader = || -> anyhow::Result<Connection> {
            let c = Connection::open_with_flags(
                &db,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("cannot open the queue database {}", db.display()))?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(c)
        };
        let reader = open_reader()?;
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let checkpoint_conn = Connection::open(&db)
            .with_context(|| format!("cannot open the queue database {}", db.display()))?;
        thread::Builder::new()
            .name("queue-checkpoint".into())
            .spawn({
                let wal = dir.join(format!("{DB_FILE}-wal"));
                move || checkpointer(checkpoint_conn, wal, stop_rx)
            })
            .context("cannot start the queue checkpoint thread")?;
        let journal_bytes = journal::size(&journal_dir);
        let writer = Writer {
            conn,
            journal,
            journal_dir,
            kept_from: last + 1,
            backlog: Vec::new(),
            max_size: settings.max_size,
            page_size,
            journal_bytes,
            frames: Vec::with_capacity(1 << 20),
        };
        thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer.run(rx))
            .context("cannot start the queue writer thread")?;
        Ok(Embedded {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
            dir,
            settings: settings.clone(),
            page_size,
            _lock: lock,
            _checkpointer: stop_tx,
        })
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
    let wal = std::fs::metadata(dir.join(format!("{DB_FILE}-wal"))).map_or(0, |m| m.len());
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
fn checkpointer(conn: Connection, wal: PathBuf, stop: mpsc::Receiver<()>) {
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_RESTART_BYTES);
        let sql = if big {
            "PRAGMA wal_checkpoint(RESTART)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        if let Err(e) = conn.query_row(sql, [], |_| Ok(())) {
            tracing::debug!(error = %e, "queue checkpoint skipped");
        }
    }
}

/// Pragmas and schema; returns the page size.
fn setup(conn: &mut Connection, settings: &config::Embedded) -> anyhow::Result<u64> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
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
    max_size: u64,
    /// The database's page size, and the journal's bytes on disk (kept as segments are
    /// written and removed, so the `max_size` check of each batch lists no folder).
    page_size: u64,
    journal_bytes: u64,
    /// Reused buffer for a batch's journal records.
    frames: Vec<u8>,
}

impl Writer {
    /// Works until every sender is gone.
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut batch = Vec::with_capacity(256);
        // When held-back work is tried again: a deadline, so steady traffic (which never
        // leaves the channel idle for a whole interval) cannot put the retry off for ever.
        let mut retry_at = std::time::Instant::now();
        loop {
            if !self.backlog.is_empty() && std::time::Instant::now() >= retry_at {
                let held = std::mem::take(&mut self.backlog);
                self.commit(held);
                if self.backlog.is_empty() {
                    tracing::info!("queue database writable again; accepting events");
                }
                retry_at = std::time::Instant::now() + INDEX_RETRY;
                continue;
            }
            let first = if self.backlog.is_empty() {
                match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                }
            } else {
                let wait = retry_at.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(wait) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
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
                retry_at = std::time::Instant::now() + INDEX_RETRY;
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
            if used.saturating_add(self.frames.len() as u64) > self.max_size {
                failure = Some(format!(
                    "the queue is full: {used} bytes in use, max_size is {}",
                    self.max_size
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
    /// so retention makes room again) and the journal.
    fn disk_bytes(&self) -> u64 {
        let pragma = |name: &str| -> u64 {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
                .map_or(0, unsigned)
        };
        let used = pragma("page_count").saturating_sub(pragma("freelist_count"));
        used * self.page_size + self.journal_bytes
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
    fn drop_applied_segments(&mut self, end: Position) {
        if end.segment <= self.kept_from {
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
        runtime().block_on(async {
            let store = Embedded::open(&settings).expect("open");
            store.append(event(1)).await.expect("append");
            // Reads wait for the writer to apply what it acknowledged: nothing is left to
            // land in the database after the edits below.
            store.stats().await.expect("flush");
        });
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
}
