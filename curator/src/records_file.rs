//! The log's leaf records on disk, for serving them and for the Merkle
//! tree's lower levels.
//!
//! Keeping every record in memory (about 150 bytes per log entry with its
//! allocation) made the curator's memory follow the history of the log,
//! not the live registrations. The records are a pure function of the log
//! entries, so they are kept in a file that is **derived, not durable**: an
//! unlinked temporary file in the data directory, written from the log at
//! every start-up (after a start from the state snapshot: a file for the
//! entries after it, and one for its prefix written by the background check
//! of that prefix) and extended after every append. Nothing ever reads it
//! across a restart, so it needs no fsync, no format version and no
//! recovery; a crash simply drops it.
//!
//! Each record takes one fixed slot of [`SLOT_LEN`] bytes (a length byte,
//! the record, zeros), so record `i` is at `i * SLOT_LEN` and a range is one
//! positional read. A write that fails (disk full) keeps the record in
//! memory and is retried with the next one: what is served never depends on
//! whether the disk took it.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use mazu_log::record::MAX_RECORD_LEN;

/// Bytes per record on disk: a length byte and the longest record, rounded
/// up to a power of two.
pub const SLOT_LEN: usize = (MAX_RECORD_LEN + 1).next_power_of_two();

/// Records appended in one write while the file is rebuilt.
const WRITE_BATCH: usize = 512;

/// The records of the log, `0..len()`, on disk (see the [module docs](self)).
#[derive(Debug)]
pub struct RecordsFile {
    file: File,
    /// Records in the file.
    written: u64,
    /// Records after them that the file did not take yet (normally none).
    unwritten: VecDeque<Vec<u8>>,
    /// Records appended but not yet written, while the file is rebuilt.
    batch: Vec<u8>,
}

impl RecordsFile {
    /// An empty file in `dir`, unlinked (removed when the process ends).
    pub fn create_in(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            file: tempfile::tempfile_in(dir)?,
            written: 0,
            unwritten: VecDeque::new(),
            batch: Vec::new(),
        })
    }

    /// Records held.
    pub fn len(&self) -> u64 {
        self.written + self.unwritten.len() as u64 + (self.batch.len() / SLOT_LEN) as u64
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends record `len()` and writes it (with any the disk refused
    /// before). On a write error the records stay in memory, readable, and
    /// the error is returned for the log.
    pub fn push(&mut self, record: &[u8]) -> io::Result<()> {
        self.push_batched(record)?;
        self.flush()
    }

    /// Appends a record, writing only once a batch is full (start-up).
    /// [`flush`](Self::flush) writes the rest.
    /// A record that does not fit a slot is kept in memory (so that record
    /// `i` is always the `i`-th pushed) and the error returned.
    pub fn push_batched(&mut self, record: &[u8]) -> io::Result<()> {
        match slot_of(record) {
            Ok(slot) if self.unwritten.is_empty() => {
                self.batch.extend_from_slice(&slot);
                if self.batch.len() >= WRITE_BATCH * SLOT_LEN {
                    return self.flush();
                }
                Ok(())
            }
            _ => {
                self.unwritten.push_back(record.to_vec());
                self.flush()
            }
        }
    }

    /// Writes every record not yet on disk.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.batch.is_empty() {
            let at = self.written * SLOT_LEN as u64;
            match self.file.write_all_at(&self.batch, at) {
                Ok(()) => {
                    self.written += (self.batch.len() / SLOT_LEN) as u64;
                    self.batch.clear();
                }
                Err(e) => {
                    // Keep them in memory; retried with the next record.
                    for slot in self.batch.chunks(SLOT_LEN) {
                        let len = usize::from(slot[0]);
                        self.unwritten.push_back(slot[1..=len].to_vec());
                    }
                    self.batch.clear();
                    return Err(e);
                }
            }
        }
        while let Some(record) = self.unwritten.front() {
            let slot = slot_of(record)?;
            self.file
                .write_all_at(&slot, self.written * SLOT_LEN as u64)?;
            self.written += 1;
            self.unwritten.pop_front();
        }
        Ok(())
    }

    /// Records `start..end`, each on its own; `None` unless
    /// `start <= end <= len()`. An error if the file cannot be read or
    /// holds something that is not a slot.
    pub fn read(&self, start: u64, end: u64) -> io::Result<Option<Vec<Vec<u8>>>> {
        if start > end || end > self.len() {
            return Ok(None);
        }
        let mut out = Vec::new();
        let on_disk = end.min(self.written);
        if start < on_disk {
            let count = usize::try_from(on_disk - start).map_err(io::Error::other)?;
            let mut bytes = vec![0u8; count * SLOT_LEN];
            self.file
                .read_exact_at(&mut bytes, start * SLOT_LEN as u64)?;
            for slot in bytes.chunks_exact(SLOT_LEN) {
                let len = usize::from(slot[0]);
                if len == 0 || len > MAX_RECORD_LEN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the records file holds a damaged slot",
                    ));
                }
                out.push(slot[1..=len].to_vec());
            }
        }
        let in_memory = self.unwritten.iter().cloned().chain(
            self.batch
                .chunks(SLOT_LEN)
                .map(|s| s[1..=usize::from(s[0])].to_vec()),
        );
        for (i, record) in (self.written..).zip(in_memory) {
            if i >= end {
                break;
            }
            if i >= start {
                out.push(record);
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
impl RecordsFile {
    /// Flips a byte of record `index` on disk (damage, for tests).
    pub(crate) fn damage(&self, index: u64) {
        let at = index * SLOT_LEN as u64 + 5;
        let mut byte = [0u8; 1];
        self.file.read_exact_at(&mut byte, at).expect("read");
        self.file.write_all_at(&[byte[0] ^ 1], at).expect("write");
    }
}

/// One slot: length, record, zeros.
fn slot_of(record: &[u8]) -> io::Result<[u8; SLOT_LEN]> {
    let len = u8::try_from(record.len())
        .ok()
        .filter(|l| *l > 0 && usize::from(*l) <= MAX_RECORD_LEN)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a record of {} bytes does not fit a slot", record.len()),
            )
        })?;
    let mut slot = [0u8; SLOT_LEN];
    slot[0] = len;
    slot[1..=record.len()].copy_from_slice(record);
    Ok(slot)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn record(i: u32) -> Vec<u8> {
        // Lengths vary like real records (bind, reveal, release).
        let len = 80 + (i as usize % (MAX_RECORD_LEN - 79));
        (0..len).map(|j| (i as usize + j) as u8).collect()
    }

    #[test]
    fn ranges_read_back_what_was_pushed_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = RecordsFile::create_in(dir.path()).unwrap();
        // The start-up path (batched) then the writer's path (one by one).
        for i in 0..1500 {
            f.push_batched(&record(i)).unwrap();
        }
        f.flush().unwrap();
        for i in 1500..1600 {
            f.push(&record(i)).unwrap();
        }
        assert_eq!(f.len(), 1600);
        let all: Vec<Vec<u8>> = (0..1600).map(record).collect();
        assert_eq!(f.read(0, 1600).unwrap().unwrap(), all);
        assert_eq!(f.read(511, 513).unwrap().unwrap(), all[511..513]);
        assert_eq!(f.read(7, 7).unwrap().unwrap(), Vec::<Vec<u8>>::new());
        assert!(f.read(0, 1601).unwrap().is_none());
        assert!(f.read(9, 8).unwrap().is_none());
        // The file is unlinked: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unbatched_records_are_readable_before_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = RecordsFile::create_in(dir.path()).unwrap();
        for i in 0..10 {
            f.push_batched(&record(i)).unwrap();
        }
        assert_eq!(f.len(), 10);
        assert_eq!(f.read(8, 10).unwrap().unwrap(), vec![record(8), record(9)]);
    }

    /// A record that does not fit a slot (never a leaf record) is an
    /// error, but it keeps its place: every later record stays at its index.
    #[test]
    fn a_record_that_does_not_fit_a_slot_keeps_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = RecordsFile::create_in(dir.path()).unwrap();
        f.push(&record(0)).unwrap();
        let oversized = vec![1u8; MAX_RECORD_LEN + 1];
        assert!(f.push(&oversized).is_err());
        assert!(f.push(&record(2)).is_err(), "queued behind it");
        assert_eq!(f.len(), 3);
        assert_eq!(
            f.read(0, 3).unwrap().unwrap(),
            vec![record(0), oversized, record(2)]
        );
    }
}
