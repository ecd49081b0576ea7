//! SQLite (rusqlite, bundled): WAL journal, synchronous=FULL, prepared
//! cached statements, one IMMEDIATE transaction per batch.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

use super::Store;
use crate::model::{Event, Outcome, PENDING, TARGETS, Update};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY, id TEXT UNIQUE, route TEXT, type TEXT,
    received_at INT, headers BLOB, body BLOB);
CREATE TABLE IF NOT EXISTS deliveries(
    event_seq INT, target TEXT, state INT, attempts INT, next_at INT,
    PRIMARY KEY(event_seq, target)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup(
    route TEXT, key TEXT, event_seq INT, at INT,
    PRIMARY KEY(route, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts(
    event_seq INT, target TEXT, attempt INT, at INT, status INT,
    PRIMARY KEY(event_seq, target, attempt)) WITHOUT ROWID;
";

pub struct Sqlite {
    conn: Connection,
    next_seq: u64,
    full_sync: bool,
    checkpointer: Option<Checkpointer>,
}

/// The `sqlite-bgckpt` variant: the writer's connection never checkpoints
/// (wal_autocheckpoint=0); a second connection on its own thread runs a
/// PASSIVE checkpoint every 50 ms, so the commit path only ever appends to
/// the WAL and syncs it.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(100))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name("checkpointer".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                    // Busy (a VACUUM, say) is fine: next round.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Sqlite {
    pub fn open(dir: &Path, background_checkpoint: bool) -> anyhow::Result<Self> {
        let path = dir.join("hookrouter.db");
        let conn = Connection::open(&path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        conn.execute_batch(SCHEMA)?;
        conn.set_prepared_statement_cache_capacity(32);
        let next_seq: i64 =
            conn.query_row("SELECT coalesce(max(seq), 0) + 1 FROM events", [], |r| r.get(0))?;
        let next_seq = u64::try_from(next_seq)?;
        let checkpointer = if background_checkpoint {
            conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
            Some(Checkpointer::start(&path)?)
        } else {
            None
        };
        Ok(Sqlite {
            conn,
            next_seq,
            full_sync: true,
            checkpointer,
        })
    }

    fn set_full_sync(&mut self, full: bool) -> anyhow::Result<()> {
        if self.full_sync != full {
            self.conn.execute_batch(if full {
                "PRAGMA synchronous=FULL;"
            } else {
                "PRAGMA synchronous=NORMAL;"
            })?;
            self.full_sync = full;
        }
        Ok(())
    }
}

impl Store for Sqlite {
    fn ingest(&mut self, batch: &[Event], out: &mut Vec<Outcome>) -> anyhow::Result<()> {
        self.set_full_sync(true)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut dedup = tx.prepare_cached(
                "INSERT INTO dedup(route, key, event_seq, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?;
            let mut ev = tx.prepare_cached(
                "INSERT INTO events(seq, id, route, type, received_at, headers, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut del = tx.prepare_cached(
                "INSERT INTO deliveries(event_seq, target, state, attempts, next_at)
                 VALUES (?1, ?2, ?3, 0, ?4)",
            )?;
            for e in batch {
                // SQLite integers are i64; rusqlite 0.43 binds no u64.
                let seq = i64::try_from(self.next_seq)?;
                if dedup.execute(params![e.route, e.dedup_key, seq, e.received_at])? == 0 {
                    out.push(Outcome::Duplicate);
                    continue;
                }
                ev.execute(params![
                    seq,
                    e.id,
                    e.route,
                    e.typ,
                    e.received_at,
                    e.headers,
                    e.body
                ])?;
                for t in TARGETS {
                    del.execute(params![seq, t, PENDING, e.received_at])?;
                }
                self.next_seq += 1;
                out.push(Outcome::Stored(self.next_seq - 1));
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn update(&mut self, batch: &[Update], durable: bool) -> anyhow::Result<()> {
        self.set_full_sync(durable)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut upd = tx.prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = attempts + 1, next_at = ?4
                 WHERE event_seq = ?1 AND target = ?2 RETURNING attempts",
            )?;
            let mut att = tx.prepare_cached(
                "INSERT INTO attempts(event_seq, target, attempt, at, status)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for u in batch {
                let target = TARGETS[u.target];
                let seq = i64::try_from(u.seq)?;
                let n: u32 =
                    upd.query_row(params![seq, target, u.state, u.next_at], |r| r.get(0))?;
                att.execute(params![seq, target, n, u.at, u.status])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn sync(&mut self) -> anyhow::Result<()> {
        // With synchronous=NORMAL, WAL commits are not synced; a checkpoint
        // syncs the WAL (then the database file).
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        self.set_full_sync(true)
    }

    fn purge(&mut self, upto: u64) -> anyhow::Result<()> {
        self.set_full_sync(true)?;
        let upto = i64::try_from(upto)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for sql in [
            "DELETE FROM attempts WHERE event_seq < ?1",
            "DELETE FROM deliveries WHERE event_seq < ?1",
            // No index on dedup.event_seq (or .at): a scan, as a retention
            // purge of the dedup window by time would be.
            "DELETE FROM dedup WHERE event_seq < ?1",
            "DELETE FROM events WHERE seq < ?1",
        ] {
            tx.prepare_cached(sql)?.execute([upto])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn compact(&mut self) -> anyhow::Result<()> {
        // Stop the background checkpointer first: VACUUM wants the file alone.
        self.checkpointer = None;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        self.conn.execute_batch("VACUUM;")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}
