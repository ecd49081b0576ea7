//! redb: one write transaction per batch with Durability::Immediate. The SQL
//! tables map to typed key/value tables; the events.id UNIQUE constraint is
//! an explicit id -> seq table.

use std::path::Path;

use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::Store;
use crate::model::{Event, Outcome, PENDING, TARGETS, Update, decode_event_id, encode_event};

const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
const EVENT_IDS: TableDefinition<'_, &str, u64> = TableDefinition::new("event_ids");
/// (event_seq, target) -> (state, attempts, next_at)
const DELIVERIES: TableDefinition<'_, (u64, &str), (u8, u32, i64)> =
    TableDefinition::new("deliveries");
/// (route, key) -> (event_seq, at)
const DEDUP: TableDefinition<'_, (&str, &str), (u64, i64)> = TableDefinition::new("dedup");
/// (event_seq, target, attempt) -> (at, status)
const ATTEMPTS: TableDefinition<'_, (u64, &str, u32), (i64, u16)> =
    TableDefinition::new("attempts");

pub struct Redb {
    db: Database,
    next_seq: u64,
    buf: Vec<u8>,
}

impl Redb {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let db = Database::create(dir.join("hookrouter.redb"))?;
        let txn = db.begin_write()?;
        let next_seq = {
            txn.open_table(EVENT_IDS)?;
            txn.open_table(DELIVERIES)?;
            txn.open_table(DEDUP)?;
            txn.open_table(ATTEMPTS)?;
            let events = txn.open_table(EVENTS)?;
            let last = events.last()?.map(|(k, _)| k.value());
            last.map_or(1, |s| s + 1)
        };
        txn.commit()?;
        Ok(Redb {
            db,
            next_seq,
            buf: Vec::with_capacity(4096),
        })
    }
}

impl Store for Redb {
    fn ingest(&mut self, batch: &[Event], out: &mut Vec<Outcome>) -> anyhow::Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(EVENT_IDS)?;
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut dedup = txn.open_table(DEDUP)?;
            for e in batch {
                let key = (e.route, e.dedup_key.as_str());
                if dedup.get(key)?.is_some() {
                    out.push(Outcome::Duplicate);
                    continue;
                }
                let seq = self.next_seq;
                dedup.insert(key, (seq, e.received_at))?;
                self.buf.clear();
                encode_event(e, &mut self.buf);
                events.insert(seq, self.buf.as_slice())?;
                anyhow::ensure!(ids.insert(e.id.as_str(), seq)?.is_none(), "duplicate id");
                for t in TARGETS {
                    deliveries.insert((seq, t), (PENDING, 0u32, e.received_at))?;
                }
                self.next_seq += 1;
                out.push(Outcome::Stored(seq));
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn update(&mut self, batch: &[Update], durable: bool) -> anyhow::Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut attempts = txn.open_table(ATTEMPTS)?;
            for u in batch {
                let target = TARGETS[u.target];
                let key = (u.seq, target);
                let (_, n, _) = deliveries
                    .get(key)?
                    .map(|g| g.value())
                    .ok_or_else(|| anyhow::anyhow!("no delivery {key:?}"))?;
                deliveries.insert(key, (u.state, n + 1, u.next_at))?;
                attempts.insert((u.seq, target, n + 1), (u.at, u.status))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn sync(&mut self) -> anyhow::Result<()> {
        // An Immediate commit makes the earlier Durability::None commits
        // durable too.
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        Ok(())
    }

    fn purge(&mut self, upto: u64) -> anyhow::Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(EVENT_IDS)?;
            let mut gone_ids: Vec<String> = Vec::new();
            events.retain_in(..upto, |_, rec| {
                if let Some(id) = decode_event_id(rec) {
                    gone_ids.push(String::from_utf8_lossy(id).into_owned());
                }
                false
            })?;
            for id in &gone_ids {
                ids.remove(id.as_str())?;
            }
            txn.open_table(DELIVERIES)?
                .retain_in((0u64, "")..(upto, ""), |_, _| false)?;
            txn.open_table(ATTEMPTS)?
                .retain_in((0u64, "", 0u32)..(upto, "", 0u32), |_, _| false)?;
            txn.open_table(DEDUP)?
                .retain(|_, (seq, _)| seq >= upto)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn compact(&mut self) -> anyhow::Result<()> {
        for _ in 0..8 {
            if !self.db.compact()? {
                break;
            }
        }
        Ok(())
    }
}
