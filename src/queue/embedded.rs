//! The embedded queue: one SQLite database under `queue.embedded.path`, in WAL mode with
//! `synchronous=FULL`, so a committed transaction has been fsync'd.
//!
//! One writer thread owns the write connection and does group commit: it takes the first
//! waiting command, drains every other one already queued (up to [`MAX_BATCH`]), applies them
//! in one transaction and commits once, then answers each. Appends therefore wait for exactly
//! one fsync that covers them, however many arrive at once. If anything in the transaction
//! fails (disk full, I/O error, `max_size` reached) it is rolled back whole and every append in
//! it fails: never a 202 for an event that is not stored, never half an event stored.
//!
//! Reads (listings, loading a body for a retry) use a second connection; WAL lets them run
//! beside the writer. A lock file keeps a second process from opening the same store.

use std::{
    fs::File,
    path::PathBuf,
    sync::{Arc, Mutex, mpsc},
    thread,
};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use super::{
    Appended, AttemptRecord, AttemptView, DeliveryState, DeliveryView, EventView, ListFilter,
    NewEvent, Pending, Purged, QueueError, ReplaySelection, Stats, StoredEvent, now_ms, record,
    rfc3339,
};
use crate::config;

/// Most commands applied in one transaction.
const MAX_BATCH: usize = 4096;

/// The database file's name in the store folder.
const DB_FILE: &str = "hookrouter.sqlite3";

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

enum Cmd {
    Append(Box<NewEvent>, oneshot::Sender<Result<Appended, QueueError>>),
    Record(Box<AttemptRecord>),
    Replay(
        ReplaySelection,
        oneshot::Sender<Result<Vec<Pending>, QueueError>>,
    ),
    Purge(Retention, oneshot::Sender<Result<Purged, QueueError>>),
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
        let reader = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open the queue database {}", db.display()))?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
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
        thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer(conn, rx))
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

    /// Runs `f` on the read connection off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
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

    pub(crate) async fn stats(&self) -> Result<Stats, QueueError> {
        let page_size = self.page_size;
        let wal = self.dir.join(format!("{DB_FILE}-wal"));
        let max_bytes = self.settings.max_size;
        self.read(move |c| {
            let pages = unsigned(c.query_row("PRAGMA page_count", [], |r| r.get(0))?);
            let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
            let events = unsigned(c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?);
            let mut st = c.prepare(
                "SELECT state, count(*) FROM deliveries WHERE state <> 1 GROUP BY state",
            )?;
            let mut stats = Stats {
                disk_bytes: pages * page_size + wal_bytes,
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
        "PRAGMA synchronous = FULL;
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
    Append(oneshot::Sender<Result<Appended, QueueError>>, Appended),
    Replay(
        oneshot::Sender<Result<Vec<Pending>, QueueError>>,
        Vec<Pending>,
    ),
    Purge(oneshot::Sender<Result<Purged, QueueError>>, Purged),
    None,
}

impl Reply {
    fn fail(self, why: &str) {
        let e = || QueueError::Unavailable(why.to_string());
        match self {
            Reply::Append(tx, _) => drop(tx.send(Err(e()))),
            Reply::Replay(tx, _) => drop(tx.send(Err(e()))),
            Reply::Purge(tx, _) => drop(tx.send(Err(e()))),
            Reply::None => {}
        }
    }

    fn send(self) {
        match self {
            Reply::Append(tx, v) => drop(tx.send(Ok(v))),
            Reply::Replay(tx, v) => drop(tx.send(Ok(v))),
            Reply::Purge(tx, v) => drop(tx.send(Ok(v))),
            Reply::None => {}
        }
    }
}

/// The writer thread: group commit until every sender is gone.
fn writer(mut conn: Connection, rx: mpsc::Receiver<Cmd>) {
    let mut batch = Vec::with_capacity(256);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        commit(&mut conn, &mut batch);
    }
}

fn commit(conn: &mut Connection, batch: &mut Vec<Cmd>) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut failure = None;
    let started = std::time::Instant::now();
    let commands = batch.len();
    let mut applied = std::time::Duration::ZERO;
    match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Err(e) => failure = Some(e.to_string()),
        Ok(tx) => {
            for cmd in batch.drain(..) {
                match apply(&tx, cmd) {
                    Ok(r) => replies.push(r),
                    Err((r, e)) => {
                        replies.push(r);
                        failure.get_or_insert(e.to_string());
                    }
                }
            }
            applied = started.elapsed();
            if failure.is_none() {
                if let Err(e) = tx.commit() {
                    failure = Some(e.to_string());
                }
            } else {
                drop(tx.rollback());
            }
        }
    }
    tracing::trace!(
        commands,
        apply_us = applied.as_micros(),
        total_us = started.elapsed().as_micros(),
        "queue batch"
    );
    // Commands not applied (the transaction never began) still need an answer.
    for cmd in batch.drain(..) {
        replies.push(match cmd {
            Cmd::Append(_, tx) => Reply::Append(tx, Appended::Stored),
            Cmd::Replay(_, tx) => Reply::Replay(tx, Vec::new()),
            Cmd::Purge(_, tx) => Reply::Purge(tx, Purged::default()),
            Cmd::Record(_) => Reply::None,
        });
    }
    match failure {
        Some(why) => {
            tracing::error!(error = %why, "queue write failed; nothing in this batch was stored");
            for r in replies {
                r.fail(&why);
            }
        }
        None => replies.into_iter().for_each(Reply::send),
    }
}

type Applied = Result<Reply, (Reply, rusqlite::Error)>;

fn apply(tx: &Transaction<'_>, cmd: Cmd) -> Applied {
    match cmd {
        Cmd::Append(e, reply) => match append(tx, &e) {
            Ok(v) => Ok(Reply::Append(reply, v)),
            Err(err) => Err((Reply::Append(reply, Appended::Stored), err)),
        },
        Cmd::Record(a) => match record_attempt(tx, &a) {
            Ok(()) => Ok(Reply::None),
            Err(err) => Err((Reply::None, err)),
        },
        Cmd::Replay(sel, reply) => match replay(tx, &sel) {
            Ok(v) => Ok(Reply::Replay(reply, v)),
            Err(err) => Err((Reply::Replay(reply, Vec::new()), err)),
        },
        Cmd::Purge(retention, reply) => match purge(tx, retention) {
            Ok(p) => Ok(Reply::Purge(reply, p)),
            Err(err) => Err((Reply::Purge(reply, Purged::default()), err)),
        },
    }
}

fn append(tx: &Transaction<'_>, e: &NewEvent) -> rusqlite::Result<Appended> {
    if let Some(key) = e.dedup_key.as_deref().filter(|_| e.dedup_window_ms > 0) {
        let seen: Option<(String, i64)> = tx
            .prepare_cached("SELECT event_id, expires_ms FROM dedup WHERE route = ?1 AND key = ?2")?
            .query_row(params![e.route, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((id, expires)) = seen
            && expires > e.received_ms
        {
            return Ok(Appended::Duplicate { id });
        }
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
    tx.prepare_cached(
        "INSERT INTO events (id, route, provider_id, type, version, received_ms, query, format,
                             headers, body)
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
    let mut st = tx.prepare_cached(
        "INSERT INTO deliveries (event_id, target, state, attempts, round_attempts,
                                 round_started_ms, next_ms, updated_ms)
         VALUES (?1, ?2, 0, 0, 0, ?3, ?3, ?3)",
    )?;
    for t in &e.targets {
        st.execute(params![e.id, t, e.received_ms])?;
    }
    Ok(Appended::Stored)
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
