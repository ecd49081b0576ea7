//! fjall: one cross-keyspace write batch per writer batch, and the journal
//! persisted with PersistMode::SyncAll as part of that commit. One keyspace
//! per SQL table, plus an id -> seq keyspace for events.id UNIQUE.
//!
//! Keys (big-endian integers, so they sort like the SQL primary keys):
//! events: seq; event_ids: id; deliveries: seq ++ target;
//! attempts: seq ++ target ++ 0x00 ++ attempt; dedup: route ++ 0x00 ++ key.

use std::collections::HashSet;
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::Store;
use crate::model::{Event, Outcome, PENDING, TARGETS, Update, decode_event_id, encode_event};

pub struct Fjall {
    db: Database,
    events: Keyspace,
    ids: Keyspace,
    deliveries: Keyspace,
    dedup: Keyspace,
    attempts: Keyspace,
    next_seq: u64,
}

fn delivery_key(seq: u64, target: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + target.len());
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(target.as_bytes());
    k
}

fn delivery_val(state: u8, attempts: u32, next_at: i64) -> [u8; 13] {
    let mut v = [0u8; 13];
    v[0] = state;
    v[1..5].copy_from_slice(&attempts.to_be_bytes());
    v[5..13].copy_from_slice(&next_at.to_be_bytes());
    v
}

fn be_u64(b: &[u8]) -> anyhow::Result<u64> {
    Ok(u64::from_be_bytes(
        b.get(..8)
            .ok_or_else(|| anyhow::anyhow!("short record"))?
            .try_into()?,
    ))
}

impl Fjall {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let db = Database::builder(dir.join("fjall")).open()?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        let events = ks("events")?;
        let next_seq = match events.last_key_value() {
            Some(kv) => be_u64(&kv.key()?)? + 1,
            None => 1,
        };
        Ok(Fjall {
            ids: ks("event_ids")?,
            deliveries: ks("deliveries")?,
            dedup: ks("dedup")?,
            attempts: ks("attempts")?,
            events,
            next_seq,
            db,
        })
    }

    fn all(&self) -> [&Keyspace; 5] {
        [
            &self.events,
            &self.ids,
            &self.deliveries,
            &self.dedup,
            &self.attempts,
        ]
    }
}

impl Store for Fjall {
    fn ingest(&mut self, batch: &[Event], out: &mut Vec<Outcome>) -> anyhow::Result<()> {
        let mut b = self.db.batch().durability(Some(PersistMode::SyncAll));
        // A batch's own inserts are not visible to reads before it commits.
        let mut in_batch: HashSet<Vec<u8>> = HashSet::new();
        for e in batch {
            let mut dkey = Vec::with_capacity(e.route.len() + 1 + e.dedup_key.len());
            dkey.extend_from_slice(e.route.as_bytes());
            dkey.push(0);
            dkey.extend_from_slice(e.dedup_key.as_bytes());
            if in_batch.contains(&dkey) || self.dedup.contains_key(&dkey)? {
                out.push(Outcome::Duplicate);
                continue;
            }
            let seq = self.next_seq;
            let mut dval = [0u8; 16];
            dval[..8].copy_from_slice(&seq.to_be_bytes());
            dval[8..].copy_from_slice(&e.received_at.to_be_bytes());
            b.insert(&self.dedup, dkey.clone(), dval);
            in_batch.insert(dkey);
            let mut rec = Vec::with_capacity(2600);
            encode_event(e, &mut rec);
            b.insert(&self.events, seq.to_be_bytes(), rec);
            b.insert(&self.ids, e.id.as_str(), seq.to_be_bytes());
            for t in TARGETS {
                b.insert(
                    &self.deliveries,
                    delivery_key(seq, t),
                    delivery_val(PENDING, 0, e.received_at),
                );
            }
            self.next_seq += 1;
            out.push(Outcome::Stored(seq));
        }
        b.commit()?;
        Ok(())
    }

    fn update(&mut self, batch: &[Update], durable: bool) -> anyhow::Result<()> {
        let mode = if durable {
            PersistMode::SyncAll
        } else {
            PersistMode::Buffer
        };
        let mut b = self.db.batch().durability(Some(mode));
        for u in batch {
            let target = TARGETS[u.target];
            let key = delivery_key(u.seq, target);
            let cur = self
                .deliveries
                .get(&key)?
                .ok_or_else(|| anyhow::anyhow!("no delivery {} {target}", u.seq))?;
            let n = u32::from_be_bytes(cur.get(1..5).unwrap_or(&[0; 4]).try_into()?) + 1;
            let mut akey = key.clone();
            akey.push(0);
            akey.extend_from_slice(&n.to_be_bytes());
            let mut aval = [0u8; 10];
            aval[..8].copy_from_slice(&u.at.to_be_bytes());
            aval[8..].copy_from_slice(&u.status.to_be_bytes());
            b.insert(&self.deliveries, key, delivery_val(u.state, n, u.next_at));
            b.insert(&self.attempts, akey, aval);
        }
        b.commit()?;
        Ok(())
    }

    fn sync(&mut self) -> anyhow::Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn purge(&mut self, upto: u64) -> anyhow::Result<()> {
        let end = upto.to_be_bytes();
        let mut b = self.db.batch().durability(Some(PersistMode::SyncAll));
        for kv in self.events.range(..end) {
            let (k, v) = kv.into_inner()?;
            if let Some(id) = decode_event_id(&v) {
                b.remove(&self.ids, id.to_vec());
            }
            b.remove(&self.events, k);
        }
        for ks in [&self.deliveries, &self.attempts] {
            for kv in ks.range(..end) {
                b.remove(ks, kv.key()?);
            }
        }
        for kv in self.dedup.iter() {
            let (k, v) = kv.into_inner()?;
            if be_u64(&v)? < upto {
                b.remove(&self.dedup, k);
            }
        }
        b.commit()?;
        Ok(())
    }

    fn compact(&mut self) -> anyhow::Result<()> {
        // major_compact is #[doc(hidden)] in fjall 3: the background
        // compaction would get there on its own, eventually.
        for ks in self.all() {
            ks.rotate_memtable_and_wait()?;
            ks.major_compact()?;
        }
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}
