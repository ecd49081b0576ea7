//! The ingest journal: append-only segment files in `<queue path>/journal/` where an event is
//! made durable before the router answers 202.
//!
//! A batch of events is one `write` and one `fdatasync`, whatever its size: the cheapest
//! durable write a disk offers. The database (see `embedded.rs`) is then brought up to date
//! from the same events without waiting for its own sync; it records how far into the journal
//! it got, and on start everything after that point is applied again. A segment is removed
//! once the database holds all of it durably.
//!
//! Each record is framed as `length (u32 LE) | CRC-32 of the payload (u32 LE) | payload`,
//! the payload being an event in [`record`](super::record) format. A crash can leave the last
//! segment ending in a partial record; it is cut off when the journal is read on start (no
//! 202 was sent for it: the reply waits for the sync). A write or sync that fails is cut off
//! at once, and if even that fails the journal moves on to a new segment, so an unreadable
//! stretch never sits before acknowledged events in the same file.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

/// Bytes of a record's frame before its payload.
const FRAME: usize = 8;

/// Where a record ends: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Position {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

/// The segment being written.
pub(crate) struct Journal {
    dir: PathBuf,
    file: File,
    segment: u64,
    len: u64,
    /// A segment this large is closed before the next batch.
    segment_bytes: u64,
    /// A failed write could not be cut off (or the segment was retired): the next batch goes
    /// to a new segment.
    tainted: bool,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.log"))
}

/// The segment numbers in `dir`, ascending.
pub(crate) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Bytes the journal's segments take.
pub(crate) fn size(dir: &Path) -> u64 {
    segments(dir).map_or(0, |all| {
        all.iter()
            .filter_map(|n| std::fs::metadata(segment_path(dir, *n)).ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Adds one framed record holding `payload` to `out`.
pub(crate) fn frame(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME]);
    payload(out);
    let body = &out[start + FRAME..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + FRAME].copy_from_slice(&crc.to_le_bytes());
}

/// Makes a directory entry (a created or removed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Journal {
    /// Starts segment `segment` (a new, empty file) in `dir`.
    pub(crate) fn create(dir: &Path, segment: u64, segment_bytes: u64) -> io::Result<Journal> {
        // An empty file of that number is taken over: a rotation that created it but failed
        // to sync the folder is retried rather than blocked for good.
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(segment_path(dir, segment))?;
        if file.metadata()?.len() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("journal segment {segment} already holds records"),
            ));
        }
        sync_dir(dir)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            file,
            segment,
            len: 0,
            segment_bytes,
            tainted: false,
        })
    }

    /// Writes nothing more to this segment: the next batch starts a new one (the segment
    /// may have been removed under it).
    pub(crate) fn retire(&mut self) {
        self.tainted = true;
    }

    /// Appends `frames` (whole framed records) and syncs them; returns where they end. On
    /// error nothing of them counts: the segment is cut back to where it was.
    pub(crate) fn append(&mut self, frames: &[u8]) -> io::Result<Position> {
        if self.tainted || (self.len > 0 && self.len + frames.len() as u64 > self.segment_bytes) {
            *self = Journal::create(&self.dir, self.segment + 1, self.segment_bytes)?;
        }
        let start = self.len;
        match self
            .file
            .write_all(frames)
            .and_then(|()| self.file.sync_data())
        {
            Ok(()) => {
                self.len += frames.len() as u64;
                Ok(Position {
                    segment: self.segment,
                    offset: self.len,
                })
            }
            Err(e) => {
                // After a failed sync the page cache may not match the disk: never write
                // behind this point again in this file unless it could be cut back.
                let cut = self
                    .file
                    .set_len(start)
                    .and_then(|()| self.file.sync_data());
                if cut.is_err() {
                    self.tainted = true;
                }
                Err(e)
            }
        }
    }
}

/// What reading the journal found.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The highest segment number seen (0 when there is none).
    pub(crate) last_segment: u64,
    /// Records applied.
    pub(crate) records: u64,
}

/// Calls `apply` with every record after `from`, in order, with the position where it ends.
/// The last segment's unreadable tail (a write a crash interrupted) is cut off; an unreadable
/// stretch in an earlier segment (a write that failed and could not be cut back) is skipped
/// with a warning.
pub(crate) fn read_from(
    dir: &Path,
    from: Position,
    mut apply: impl FnMut(&[u8], Position) -> anyhow::Result<()>,
) -> anyhow::Result<Recovered> {
    use anyhow::Context as _;
    let all = segments(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut out = Recovered {
        last_segment: all.last().copied().unwrap_or(0),
        records: 0,
    };
    for (i, &n) in all.iter().enumerate() {
        if n < from.segment {
            continue;
        }
        let path = segment_path(dir, n);
        let data =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut at = if n == from.segment {
            usize::try_from(from.offset).unwrap_or(usize::MAX)
        } else {
            0
        };
        while at < data.len() {
            let Some(payload) = record_at(&data, at) else {
                break;
            };
            at += FRAME + payload.len();
            apply(
                payload,
                Position {
                    segment: n,
                    offset: at as u64,
                },
            )?;
            out.records += 1;
        }
        if at < data.len() {
            if i + 1 == all.len() {
                tracing::warn!(
                    segment = %path.display(),
                    offset = at,
                    dropped_bytes = data.len() - at,
                    "journal ends in an incomplete record (a write interrupted by a crash, never acknowledged); cutting it off"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                f.set_len(at as u64)
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("cannot cut {}", path.display()))?;
            } else {
                tracing::warn!(
                    segment = %path.display(),
                    offset = at,
                    skipped_bytes = data.len() - at,
                    "journal segment has an unreadable stretch (a write that failed); skipping it"
                );
            }
        }
    }
    Ok(out)
}

/// The payload of the record framed at `at`, if it is whole and its checksum matches.
fn record_at(data: &[u8], at: usize) -> Option<&[u8]> {
    let head = data.get(at..at.checked_add(FRAME)?)?;
    let len = usize::try_from(u32::from_le_bytes(head[..4].try_into().ok()?)).ok()?;
    // Every record has at least its format byte; zeros (a tail a power cut left zero-filled)
    // would otherwise pass as an empty record with a matching checksum.
    if len == 0 {
        return None;
    }
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    let start = at + FRAME;
    let payload = data.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// Removes every segment numbered below `segment`; returns the bytes freed.
pub(crate) fn remove_before(dir: &Path, segment: u64) -> io::Result<u64> {
    let mut freed = 0;
    for n in segments(dir)?.into_iter().filter(|n| *n < segment) {
        let path = segment_path(dir, n);
        freed += std::fs::metadata(&path).map_or(0, |m| m.len());
        std::fs::remove_file(&path)?;
    }
    if freed > 0 {
        sync_dir(dir)?;
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(dir: &Path, from: Position) -> Vec<(Vec<u8>, Position)> {
        let mut seen = Vec::new();
        read_from(dir, from, |p, pos| {
            seen.push((p.to_vec(), pos));
            Ok(())
        })
        .expect("read");
        seen
    }

    fn batch(items: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for i in items {
            frame(&mut out, |o| o.extend_from_slice(i));
        }
        out
    }

    #[test]
    fn appends_read_back_in_order_from_any_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::create(dir.path(), 1, 1 << 20).expect("create");
        let first = j.append(&batch(&[b"a", b"bb"])).expect("append");
        j.append(&batch(&[b"ccc"])).expect("append");
        let all = records(dir.path(), Position::default());
        let payloads: Vec<_> = all.iter().map(|(p, _)| p.as_slice()).collect();
        assert_eq!(payloads, [&b"a"[..], b"bb", b"ccc"]);
        assert_eq!(all[1].1, first);
        let rest = records(dir.path(), first);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, b"ccc");
    }

    #[test]
    fn segments_rotate_and_old_ones_can_be_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::create(dir.path(), 7, 64).expect("create");
        for i in 0..10u8 {
            j.append(&batch(&[&[i; 40]])).expect("append");
        }
        let segs = segments(dir.path()).expect("list");
        assert_eq!(segs.len(), 10, "one 48-byte record per 64-byte segment");
        assert_eq!(records(dir.path(), Position::default()).len(), 10);
        let freed = remove_before(dir.path(), 12).expect("remove");
        assert_eq!(freed, 5 * 48);
        let left = records(dir.path(), Position::default());
        assert_eq!(left.len(), 5);
        assert_eq!(left[0].0, [5; 40]);
    }

    #[test]
    fn a_zero_filled_tail_is_no_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::create(dir.path(), 1, 1 << 20).expect("create");
        j.append(&batch(&[b"kept"])).expect("append");
        drop(j);
        let path = segment_path(dir.path(), 1);
        let whole = std::fs::read(&path).expect("read");
        let mut data = whole.clone();
        data.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &data).expect("write");
        let got = records(dir.path(), Position::default());
        assert_eq!(got.len(), 1);
        assert_eq!(std::fs::read(&path).expect("read"), whole, "zeros cut off");
    }

    #[test]
    fn an_empty_segment_file_is_taken_over_and_a_written_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(segment_path(dir.path(), 3), b"").expect("empty file");
        let mut j = Journal::create(dir.path(), 3, 1 << 20).expect("empty segment taken over");
        j.append(&batch(&[b"x"])).expect("append");
        drop(j);
        let again = Journal::create(dir.path(), 3, 1 << 20);
        assert!(again.is_err(), "a segment with records is never reused");
        assert_eq!(records(dir.path(), Position::default()).len(), 1);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_corruption_never_yields_a_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::create(dir.path(), 1, 1 << 20).expect("create");
        j.append(&batch(&[b"kept"])).expect("append");
        drop(j);
        let path = segment_path(dir.path(), 1);
        let whole = std::fs::read(&path).expect("read");
        let next = batch(&[b"torn-record"]);
        for cut in 1..next.len() {
            let mut data = whole.clone();
            data.extend_from_slice(&next[..cut]);
            std::fs::write(&path, &data).expect("write");
            let got = records(dir.path(), Position::default());
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert_eq!(std::fs::read(&path).expect("read"), whole, "cut at {cut}");
        }
        // A flipped bit anywhere in a record makes it unreadable, never a different record.
        for bit in 0..next.len() * 8 {
            let mut data = whole.clone();
            let mut bad = next.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            data.extend_from_slice(&bad);
            std::fs::write(&path, &data).expect("write");
            let got = records(dir.path(), Position::default());
            assert_eq!(got.len(), 1, "bit {bit}");
        }
    }
}
