//! The lower bound: a plain append-only log of our own. One write() of the
//! whole batch, then fdatasync (File::sync_data). Segments of 64 MiB; the
//! dedup check is an in-memory map (rebuilt by replaying the log on start,
//! not implemented here). No queries, no indexes: only what a group commit
//! to a file costs.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Store;
use crate::model::{Event, Outcome, TARGETS, Update, encode_event};

const SEGMENT_BYTES: u64 = 64 << 20;

struct Segment {
    path: PathBuf,
    /// Highest event seq any record in the segment refers to: the segment
    /// can go once retention has passed it.
    max_ref: u64,
}

pub struct Log {
    dir: PathBuf,
    file: File,
    len: u64,
    segments: Vec<Segment>,
    next_segment: u64,
    dedup: HashMap<(&'static str, String), u64>,
    next_seq: u64,
    buf: Vec<u8>,
}

fn record(buf: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    buf.push(kind);
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    body(buf);
    let n = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&n.to_be_bytes());
}

impl Log {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("log");
        fs::create_dir_all(&dir)?;
        let path = dir.join("00000000.log");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        File::open(&dir)?.sync_all()?;
        Ok(Log {
            dir,
            file,
            len: 0,
            segments: vec![Segment { path, max_ref: 0 }],
            next_segment: 1,
            dedup: HashMap::new(),
            next_seq: 1,
            buf: Vec::with_capacity(1 << 20),
        })
    }

    /// Closes the current segment and starts the next one.
    fn rotate(&mut self) -> anyhow::Result<()> {
        self.file.sync_data()?;
        let path = self.dir.join(format!("{:08}.log", self.next_segment));
        self.next_segment += 1;
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        File::open(&self.dir)?.sync_all()?;
        self.segments.push(Segment { path, max_ref: 0 });
        self.len = 0;
        Ok(())
    }

    /// Appends the buffered batch with one write, then syncs it if asked.
    fn append(&mut self, max_ref: u64, durable: bool) -> anyhow::Result<()> {
        if self.len >= SEGMENT_BYTES {
            self.rotate()?;
        }
        self.file.write_all(&self.buf)?;
        self.len += self.buf.len() as u64;
        if let Some(s) = self.segments.last_mut() {
            s.max_ref = s.max_ref.max(max_ref);
        }
        self.buf.clear();
        if durable {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

impl Store for Log {
    fn ingest(&mut self, batch: &[Event], out: &mut Vec<Outcome>) -> anyhow::Result<()> {
        let mut max_ref = 0;
        for e in batch {
            let key = (e.route, e.dedup_key.clone());
            if self.dedup.contains_key(&key) {
                out.push(Outcome::Duplicate);
                continue;
            }
            let seq = self.next_seq;
            self.dedup.insert(key, seq);
            record(&mut self.buf, b'E', |b| {
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&(e.dedup_key.len() as u16).to_be_bytes());
                b.extend_from_slice(e.dedup_key.as_bytes());
                b.extend_from_slice(&(TARGETS.len() as u8).to_be_bytes());
                encode_event(e, b);
            });
            max_ref = seq;
            self.next_seq += 1;
            out.push(Outcome::Stored(seq));
        }
        self.append(max_ref, true)
    }

    fn update(&mut self, batch: &[Update], durable: bool) -> anyhow::Result<()> {
        let mut max_ref = 0;
        for u in batch {
            record(&mut self.buf, b'U', |b| {
                b.extend_from_slice(&u.seq.to_be_bytes());
                b.push(u.target as u8);
                b.push(u.state);
                b.extend_from_slice(&u.next_at.to_be_bytes());
                b.extend_from_slice(&u.at.to_be_bytes());
                b.extend_from_slice(&u.status.to_be_bytes());
            });
            max_ref = max_ref.max(u.seq);
        }
        self.append(max_ref, durable)
    }

    fn sync(&mut self) -> anyhow::Result<()> {
        self.file.sync_data()?;
        Ok(())
    }

    fn purge(&mut self, upto: u64) -> anyhow::Result<()> {
        // Retention = deleting whole segments that only refer to purged
        // events; the one being written is closed first if it is all dead.
        self.dedup.retain(|_, seq| *seq >= upto);
        if self.len > 0 && self.segments.last().is_some_and(|s| s.max_ref < upto) {
            self.rotate()?;
        }
        let last = self.segments.len().saturating_sub(1);
        let mut removed = false;
        let mut keep = Vec::new();
        for (i, s) in self.segments.drain(..).enumerate() {
            if i < last && s.max_ref < upto {
                fs::remove_file(&s.path)?;
                removed = true;
            } else {
                keep.push(s);
            }
        }
        self.segments = keep;
        if removed {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
