//! The four candidates behind one interface. Every method is called from the
//! single writer thread only; each call is one transaction (one commit).

use std::path::Path;

use crate::model::{Event, Outcome, Update};

pub mod fjall_store;
pub mod log_store;
pub mod redb_store;
pub mod sqlite;

pub trait Store: Send {
    /// Stores a batch of events in one transaction and makes it durable
    /// (one fsync-class sync) before returning. For each event: check and
    /// insert the dedup key; if new, insert the event (and its id index) and
    /// three pending delivery rows. Pushes one outcome per event to `out`.
    fn ingest(&mut self, batch: &[Event], out: &mut Vec<Outcome>) -> anyhow::Result<()>;

    /// Applies a batch of delivery outcomes in one transaction: the delivery
    /// row's state, attempts + 1 and next_at, plus one attempt row. With
    /// `durable`, the commit is synced like `ingest`; without, the commit
    /// is made but nobody waits for the disk (see `sync`).
    fn update(&mut self, batch: &[Update], durable: bool) -> anyhow::Result<()>;

    /// Makes everything committed so far durable.
    fn sync(&mut self) -> anyhow::Result<()>;

    /// Retention: deletes every event with seq < `upto` with its id index,
    /// deliveries, attempts and dedup entries, in one durable transaction.
    fn purge(&mut self, upto: u64) -> anyhow::Result<()>;

    /// Whatever the store offers to give space back after a purge.
    fn compact(&mut self) -> anyhow::Result<()>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    /// SQLite with checkpoints on a second connection and thread, off the
    /// commit path. Not in the default set.
    SqliteBgCheckpoint,
    Redb,
    Fjall,
    Log,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::SqliteBgCheckpoint => "sqlite-bgckpt",
            Kind::Redb => "redb",
            Kind::Fjall => "fjall",
            Kind::Log => "log",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Sqlite,
            Kind::SqliteBgCheckpoint,
            Kind::Redb,
            Kind::Fjall,
            Kind::Log,
        ]
            .into_iter()
            .find(|k| k.name() == s)
    }

    pub fn open(self, dir: &Path) -> anyhow::Result<Box<dyn Store>> {
        Ok(match self {
            Kind::Sqlite => Box::new(sqlite::Sqlite::open(dir, false)?),
            Kind::SqliteBgCheckpoint => Box::new(sqlite::Sqlite::open(dir, true)?),
            Kind::Redb => Box::new(redb_store::Redb::open(dir)?),
            Kind::Fjall => Box::new(fjall_store::Fjall::open(dir)?),
            Kind::Log => Box::new(log_store::Log::open(dir)?),
        })
    }
}
