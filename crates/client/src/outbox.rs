//! A node's durable outbox of records on their way to the control plane (patrol frames,
//! [`FrameRecord`]; monitoring readings and alerts, [`MonitorRecord`]; any [`Record`]):
//! append-only, numbered, and kept on disk until the control plane has acknowledged them,
//! so a link that drops (or a node that is killed) loses nothing and counts nothing
//! twice.
//!
//! On disk, in its own directory (0700):
//! - `stream`: the outbox's id (random, 128 bits, hex), made once; `(stream, seq)` names
//!   a record everywhere.
//! - `acked`: the highest sequence number the control plane acknowledged.
//! - `{first seq, 20 digits}.jsonl`: segments of records, one JSON line each, numbered
//!   consecutively from 1 within the stream.
//!
//! `stream` and `acked` are written temp file -> fsync -> rename -> fsync of the directory;
//! a record is appended and fsynced before [`Outbox::append`] returns (the device is told
//! "kept" only after that). On open, a torn last line (a crash mid-append: never
//! acknowledged to anyone) is cut off, numbering continues after the last whole record
//! (or the acknowledged one, whichever is higher), and segments wholly acknowledged are
//! deleted. Past its cap the outbox refuses new records ([`is_full`]) and never drops
//! one it has kept.
//!
//! Thread-safe for one writer and one forwarder (and more writers: appends are
//! serialised). Every method does blocking file I/O: call it from `spawn_blocking`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use std::marker::PhantomData;

use lingjing_model::inspect::FrameRecord;
use lingjing_model::monitor::MonitorRecord;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record an outbox keeps: JSON with a `seq` field the outbox numbers.
pub trait Record: Serialize + DeserializeOwned {
    fn seq(&self) -> u64;
    fn set_seq(&mut self, seq: u64);
}

impl Record for FrameRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

impl Record for MonitorRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

/// The default cap on the bytes of segments kept (1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// The default size from which the next record starts a new segment (8 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

const STREAM_FILE: &str = "stream";
const ACKED_FILE: &str = "acked";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// How an outbox is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Most bytes of segments on disk; past it `append` refuses ([`is_full`]).
    pub max_bytes: u64,
    /// A segment this large is closed; the next record starts a new one (segments are
    /// deleted whole once acknowledged).
    pub segment_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Whether `append`'s error means "no room" (the outbox's cap, or the disk is full): the
/// frame was not kept and the device should be told 507 Insufficient Storage.
pub fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
}

#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    /// Its last record's seq (`first - 1` while it holds none).
    last: u64,
    bytes: u64,
    path: PathBuf,
}

struct State {
    /// In order of seq; the last one is the one appended to.
    segments: Vec<Segment>,
    /// The last segment, open for appending (none: the next append makes a segment).
    file: Option<File>,
    /// The seq the next record gets.
    next: u64,
    acked: u64,
    /// Bytes of all segments.
    bytes: u64,
    /// Set when a failed append could not be undone: nothing more is appended.
    broken: Option<String>,
}

/// A durable, append-only outbox of records (see the module's docs).
pub struct Outbox<R = FrameRecord> {
    dir: PathBuf,
    stream: String,
    config: OutboxConfig,
    state: Mutex<State>,
    records: PhantomData<fn() -> R>,
}

/// Just the seq of a record line (the rest is checked to be JSON, not read).
#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|first| *first > 0)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Makes a creation, rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
}

fn valid_stream(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl<R: Record> Outbox<R> {
    /// Opens (creating) the outbox in `dir` with the default sizes.
    pub fn open(dir: &Path) -> io::Result<Outbox<R>> {
        Outbox::open_with(dir, OutboxConfig::default())
    }

    /// Opens (creating) the outbox in `dir`, recovering what a crash left: see the
    /// module's docs. An error names the file and what to do about it.
    pub fn open_with(dir: &Path, config: OutboxConfig) -> io::Result<Outbox<R>> {
        crate::fs::ensure_private_dir(dir)
            .map_err(|e| context(e, "create the outbox directory", dir))?;
        // The directory's own entry, durable before anything in it is promised.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = sync_dir(parent);
        }
        let mut segments = Vec::new();
        let mut acked_file = false;
        let mut stream_file = false;
        for entry in std::fs::read_dir(dir).map_err(|e| context(e, "read", dir))? {
            let entry = entry.map_err(|e| context(e, "read", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A `stream` or `acked` write a crash cut short: the old file stands.
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(first) = parse_segment_name(&name) {
                segments.push(Segment {
                    first,
                    last: first - 1,
                    bytes: 0,
                    path: entry.path(),
                });
            } else if name == ACKED_FILE {
                acked_file = true;
            } else if name == STREAM_FILE {
                stream_file = true;
            }
        }
        segments.sort_by_key(|s| s.first);

        let stream_path = dir.join(STREAM_FILE);
        let stream = if stream_file {
            let text = std::fs::read_to_string(&stream_path)
                .map_err(|e| context(e, "read", &stream_path))?;
            let stream = text.trim().to_owned();
            if !valid_stream(&stream) {
                return Err(invalid(format!(
                    "{} does not hold an outbox stream id (hex): restore it from a backup, or move the directory {} aside to start a new outbox (its unsent records are then lost)",
                    stream_path.display(),
                    dir.display()
                )));
            }
            stream
        } else if !segments.is_empty() || acked_file {
            return Err(invalid(format!(
                "the outbox {} holds records but no `stream` file: without their stream id they cannot be sent without being counted twice; restore the file, or move the directory aside to start a new outbox (its unsent records are then lost)",
                dir.display()
            )));
        } else {
            let stream = format!("{:032x}", rand::random::<u128>());
            crate::fs::write_private(&stream_path, stream.as_bytes())
                .map_err(|e| context(e, "write", &stream_path))?;
            stream
        };

        let acked_path = dir.join(ACKED_FILE);
        let acked = if acked_file {
            let text = std::fs::read_to_string(&acked_path)
                .map_err(|e| context(e, "read", &acked_path))?;
            text.trim().parse::<u64>().map_err(|_| {
                invalid(format!(
                    "{} does not hold a number: write the highest seq the control plane acknowledged into it (0 sends everything again; the control plane skips what it has)",
                    acked_path.display()
                ))
            })?
        } else {
            0
        };

        // Segments wholly acknowledged (the next one starts at or below acked + 1) go
        // unread; the others are read through.
        let count = segments.len();
        let firsts: Vec<u64> = segments.iter().map(|s| s.first).collect();
        let mut kept: Vec<Segment> = Vec::new();
        let mut removed = false;
        for (i, mut segment) in segments.into_iter().enumerate() {
            if let Some(&next_first) = firsts.get(i + 1)
                && next_first - 1 <= acked
            {
                std::fs::remove_file(&segment.path)
                    .map_err(|e| context(e, "remove the acknowledged segment", &segment.path))?;
                removed = true;
                continue;
            }
            match kept.last() {
                Some(prev) if prev.last + 1 != segment.first => {
                    return Err(invalid(format!(
                        "the outbox segment {} starts at seq {} where {} was expected: the outbox is damaged; move the directory {} aside to start a new one (its unsent records are then lost)",
                        segment.path.display(),
                        segment.first,
                        prev.last + 1,
                        dir.display()
                    )));
                }
                None if segment.first > acked + 1 => {
                    tracing::error!(segment = %segment.path.display(), acked, "the outbox's records after the acknowledged one and before this segment are missing (deleted by hand?): they cannot be sent");
                }
                _ => {}
            }
            scan(&mut segment, i + 1 == count, dir)?;
            kept.push(segment);
        }
        let mut segments = kept;
        let last_record = segments.last().map_or(0, |s| s.last);
        let next = last_record.max(acked) + 1;
        // The last segment too, once wholly acknowledged (then all of them are).
        if segments.last().is_some_and(|s| s.last <= acked) {
            for s in segments.drain(..) {
                std::fs::remove_file(&s.path)
                    .map_err(|e| context(e, "remove the acknowledged segment", &s.path))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(dir).map_err(|e| context(e, "sync", dir))?;
        }
        let file = match segments.last() {
            Some(s) => Some(
                OpenOptions::new()
                    .append(true)
                    .open(&s.path)
                    .map_err(|e| context(e, "open", &s.path))?,
            ),
            None => None,
        };
        let bytes = segments.iter().map(|s| s.bytes).sum();
        Ok(Outbox {
            dir: dir.to_owned(),
            stream,
            config,
            state: Mutex::new(State {
                segments,
                file,
                next,
                acked,
                bytes,
                broken: None,
            }),
            records: PhantomData,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The outbox's id: `(stream, seq)` names a record.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> OutboxConfig {
        self.config
    }

    /// Records kept and not yet acknowledged.
    pub fn depth(&self) -> u64 {
        let s = self.lock();
        s.next - 1 - s.acked
    }

    /// The highest seq acknowledged (0: none).
    pub fn acked(&self) -> u64 {
        self.lock().acked
    }

    /// The seq of the last record appended (0: none).
    pub fn last_seq(&self) -> u64 {
        self.lock().next - 1
    }

    /// Bytes of segments on disk (what the cap counts).
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Appends `record` as the next seq (whatever seq it carries is replaced), durable
    /// (fsynced) before this returns. Refuses with an error [`is_full`] says is "no room"
    /// when the outbox is at its cap (or the disk is full).
    pub fn append(&self, record: R) -> io::Result<u64> {
        self.append_all(vec![record])
    }

    /// Appends `records` as the next seqs, all durable with one fsync before this returns
    /// (a group commit); returns the last one's seq (all or none are kept). Refuses as
    /// [`Outbox::append`] does.
    pub fn append_all(&self, records: Vec<R>) -> io::Result<u64> {
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(why) = &st.broken {
            return Err(io::Error::other(format!(
                "the outbox {} stopped taking records after a failed write it could not undo ({why}): restart the node (the outbox recovers on open)",
                self.dir.display()
            )));
        }
        if records.is_empty() {
            return Ok(st.next - 1);
        }
        let seq = st.next;
        let count = records.len() as u64;
        let mut line = Vec::new();
        for (i, mut record) in records.into_iter().enumerate() {
            record.set_seq(seq + i as u64);
            serde_json::to_writer(&mut line, &record).map_err(io::Error::other)?;
            line.push(b'\n');
        }
        let len = line.len() as u64;
        if st.bytes + len > self.config.max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "this node's outbox {} holds {} MiB of records the control plane has not taken yet (its cap is {} MiB): new records are refused until it takes some; check that the node reaches the control plane",
                    self.dir.display(),
                    st.bytes >> 20,
                    self.config.max_bytes >> 20
                ),
            ));
        }
        let roll = match st.segments.last() {
            None => true,
            Some(s) => st.file.is_none() || (s.bytes > 0 && s.bytes >= self.config.segment_bytes),
        };
        if roll {
            let path = self.dir.join(segment_name(seq));
            let mut opts = OpenOptions::new();
            opts.append(true).create(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let file = opts.open(&path).map_err(|e| context(e, "create", &path))?;
            // A file of that name can only be one a failed append left empty.
            let len = file
                .metadata()
                .map_err(|e| context(e, "read", &path))?
                .len();
            if len != 0 {
                return Err(invalid(format!(
                    "{} exists already and is not empty: the outbox is damaged; restart the node to recover it",
                    path.display()
                )));
            }
            sync_dir(&self.dir).map_err(|e| context(e, "sync", &self.dir))?;
            if st.segments.last().is_some_and(|s| s.path == path) {
                st.segments.pop();
            }
            st.segments.push(Segment {
                first: seq,
                last: seq - 1,
                bytes: 0,
                path,
            });
            st.file = Some(file);
        }
        let (Some(file), Some(segment)) = (st.file.as_mut(), st.segments.last_mut()) else {
            return Err(io::Error::other("the outbox has no segment open"));
        };
        let before = segment.bytes;
        match file.write_all(&line).and_then(|()| file.sync_data()) {
            Ok(()) => {
                segment.last = seq + count - 1;
                segment.bytes += len;
                st.bytes += len;
                st.next += count;
                Ok(seq + count - 1)
            }
            Err(e) => {
                // Put the segment back as it was; if even that fails, take no more.
                let path = segment.path.clone();
                if let Err(undo) = file.set_len(before).and_then(|()| file.sync_data()) {
                    st.broken = Some(format!(
                        "{} could not be cut back after a failed append: {undo}",
                        path.display()
                    ));
                }
                Err(context(e, "append to", &path))
            }
        }
    }

    /// Up to `max_records` records after the acknowledged one, in order, and about
    /// `max_bytes` of them (always at least one when any is waiting).
    pub fn pending(&self, max_records: usize, max_bytes: usize) -> io::Result<Vec<R>> {
        let (from, to, segments) = {
            let st = self.lock();
            let from = st.acked + 1;
            let to = st.next - 1;
            let segments: Vec<Segment> = st
                .segments
                .iter()
                .filter(|s| s.last >= from && s.last >= s.first)
                .cloned()
                .collect();
            (from, to, segments)
        };
        let mut out = Vec::new();
        if from > to || max_records == 0 {
            return Ok(out);
        }
        let mut bytes = 0usize;
        let mut line = Vec::new();
        // Records up to `to` are whole and synced; appends only add after them.
        for segment in segments {
            let file = match File::open(&segment.path) {
                Ok(f) => f,
                // Deleted meanwhile: acknowledged meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(context(e, "open", &segment.path)),
            };
            let mut reader = BufReader::new(file);
            for seq in segment.first..=segment.last.min(to) {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| context(e, "read", &segment.path))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    return Err(invalid(format!(
                        "the outbox segment {} ends before record {seq}: the outbox is damaged; restart the node to recover it",
                        segment.path.display()
                    )));
                }
                if seq < from {
                    continue;
                }
                if !out.is_empty() && bytes + line.len() > max_bytes {
                    return Ok(out);
                }
                let record: R = serde_json::from_slice(&line).map_err(|e| {
                    invalid(format!(
                        "record {seq} in {} is not readable ({e}): the outbox is damaged",
                        segment.path.display()
                    ))
                })?;
                if record.seq() != seq {
                    return Err(invalid(format!(
                        "{} holds record {} where {seq} was expected: the outbox is damaged",
                        segment.path.display(),
                        record.seq()
                    )));
                }
                bytes += line.len();
                out.push(record);
                if out.len() >= max_records {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Records every record through `through` as acknowledged (written before segments
    /// wholly acknowledged are deleted); the number newly acknowledged. A `through` at or
    /// below the acknowledged one, or above the last appended, is ignored (0).
    pub fn ack(&self, through: u64) -> io::Result<u64> {
        let mut guard = self.lock();
        let st = &mut *guard;
        if through <= st.acked || through >= st.next {
            return Ok(0);
        }
        let path = self.dir.join(ACKED_FILE);
        crate::fs::write_private(&path, through.to_string().as_bytes())
            .map_err(|e| context(e, "write", &path))?;
        let newly = through - st.acked;
        st.acked = through;
        let mut removed = false;
        while let Some(s) = st.segments.first() {
            if s.last > st.acked || s.last < s.first {
                break;
            }
            if st.segments.len() == 1 {
                st.file = None;
            }
            if let Err(e) = std::fs::remove_file(&s.path) {
                tracing::warn!(path = %s.path.display(), error = %e, "cannot remove an acknowledged outbox segment; trying again after the next acknowledgement");
                break;
            }
            st.bytes -= s.bytes;
            st.segments.remove(0);
            removed = true;
        }
        if removed && let Err(e) = sync_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot sync the outbox directory");
        }
        Ok(newly)
    }
}

/// Reads a segment through: each whole line a record numbered on from `segment.first`;
/// the torn last line of the last segment (a crash mid-append) is cut off; anything else
/// out of place is an error.
fn scan(segment: &mut Segment, is_last: bool, dir: &Path) -> io::Result<()> {
    let path = segment.path.clone();
    let data = std::fs::read(&path).map_err(|e| context(e, "read", &path))?;
    let mut pos = 0usize;
    let mut seq = segment.first - 1;
    let mut cut = None;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + i);
        let whole = end.and_then(|end| {
            serde_json::from_slice::<SeqOnly>(&data[pos..end])
                .ok()
                .filter(|r| r.seq == seq + 1)
                .map(|_| end)
        });
        match whole {
            Some(end) => {
                seq += 1;
                pos = end + 1;
            }
            None if is_last && end.is_none_or(|end| end + 1 == data.len()) => {
                cut = Some(pos);
                break;
            }
            None => {
                return Err(invalid(format!(
                    "the outbox segment {} is damaged at byte {pos} (record {} expected): move the directory {} aside to start a new outbox (its unsent records are then lost), or cut the file there if you know better",
                    path.display(),
                    seq + 1,
                    dir.display()
                )));
            }
        }
    }
    if let Some(at) = cut {
        tracing::warn!(segment = %path.display(), at, torn = data.len() - at, "cut off a record a crash left half written (it was never acknowledged)");
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| context(e, "open", &path))?;
        file.set_len(at as u64)
            .and_then(|()| file.sync_data())
            .map_err(|e| context(e, "cut the torn record off", &path))?;
    }
    segment.last = seq;
    segment.bytes = pos as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(frame: &str) -> FrameRecord {
        FrameRecord {
            seq: 0,
            kind: Default::default(),
            device: "cam-1".into(),
            run: "run-1".into(),
            frame: frame.into(),
            taken_ms: 1_700_000_000_000,
            lat: 31.2,
            lon: 121.5,
            heading: None,
            model: "m".into(),
            version: 1,
            detections: Vec::new(),
            tenant: None,
            image: None,
        }
    }

    fn segments(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(SEGMENT_SUFFIX))
            .collect();
        names.sort();
        names
    }

    fn frames(records: &[FrameRecord]) -> Vec<(u64, String)> {
        records.iter().map(|r| (r.seq, r.frame.clone())).collect()
    }

    #[test]
    fn reopening_keeps_the_stream_the_numbering_and_what_is_not_acknowledged() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("outbox");
        let outbox = Outbox::<FrameRecord>::open(&dir).expect("open");
        let stream = outbox.stream().to_owned();
        assert_eq!(stream.len(), 32);
        assert_eq!(outbox.append(record("a")).expect("append"), 1);
        assert_eq!(outbox.append(record("b")).expect("append"), 2);
        assert_eq!(outbox.depth(), 2);
        drop(outbox);

        let outbox = Outbox::<FrameRecord>::open(&dir).expect("reopen");
        assert_eq!(outbox.stream(), stream);
        assert_eq!(outbox.depth(), 2);
        assert_eq!(
            frames(&outbox.pending(10, 1 << 20).expect("pending")),
            vec![(1, "a".into()), (2, "b".into())]
        );
        assert_eq!(outbox.append(record("c")).expect("append"), 3);
        assert_eq!(outbox.pending(2, 1 << 20).expect("pending").len(), 2);
        // Bytes bound a batch, but one record always goes.
        assert_eq!(outbox.pending(10, 1).expect("pending").len(), 1);
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("outbox");
        let outbox = Outbox::<FrameRecord>::open(&dir).expect("open");
        outbox.append(record("a")).expect("append");
        outbox.append(record("b")).expect("append");
        drop(outbox);
        let path = dir.join(segment_name(1));
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(br#"{"seq":3,"device":"cam-1","ru"#)
            .expect("write");
        drop(file);
        let whole = std::fs::metadata(&path).expect("meta").len();

        let outbox = Outbox::<FrameRecord>::open(&dir).expect("reopen");
        assert_eq!(outbox.last_seq(), 2);
        assert!(std::fs::metadata(&path).expect("meta").len() < whole);
        assert_eq!(outbox.append(record("c")).expect("append"), 3);
        drop(outbox);
        let outbox = Outbox::<FrameRecord>::open(&dir).expect("reopen");
        assert_eq!(
            frames(&outbox.pending(10, 1 << 20).expect("pending")),
            vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]
        );

        // A damaged line before the last is not cut: the outbox says so.
        drop(outbox);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replacen("\"seq\":2", "\"seq\":7", 1)).expect("write");
        let err = Outbox::<FrameRecord>::open(&dir).err().expect("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn an_acknowledgement_persists_and_acknowledged_segments_go() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("outbox");
        let config = OutboxConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: 1,
        };
        let outbox = Outbox::<FrameRecord>::open_with(&dir, config).expect("open");
        for f in ["a", "b", "c", "d"] {
            outbox.append(record(f)).expect("append");
        }
        // One record a segment.
        assert_eq!(segments(&dir).len(), 4);
        assert_eq!(outbox.ack(2).expect("ack"), 2);
        assert_eq!(segments(&dir), vec![segment_name(3), segment_name(4)]);
        // Below the acknowledged one, or past the last: ignored.
        assert_eq!(outbox.ack(1).expect("ack"), 0);
        assert_eq!(outbox.ack(9).expect("ack"), 0);
        assert_eq!(outbox.depth(), 2);
        drop(outbox);

        let outbox = Outbox::<FrameRecord>::open_with(&dir, config).expect("reopen");
        assert_eq!(outbox.acked(), 2);
        assert_eq!(
            frames(&outbox.pending(10, 1 << 20).expect("pending")),
            vec![(3, "c".into()), (4, "d".into())]
        );
        assert_eq!(outbox.ack(4).expect("ack"), 2);
        assert!(segments(&dir).is_empty());
        assert_eq!(outbox.bytes(), 0);
        assert_eq!(outbox.depth(), 0);
        // Everything acknowledged and gone: the numbering still goes on.
        drop(outbox);
        let outbox = Outbox::<FrameRecord>::open_with(&dir, config).expect("reopen");
        assert_eq!(outbox.append(record("e")).expect("append"), 5);
        assert_eq!(
            frames(&outbox.pending(10, 1 << 20).expect("pending")),
            vec![(5, "e".into())]
        );
    }

    #[test]
    fn segments_acknowledged_before_a_crash_deleted_them_go_on_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("outbox");
        let config = OutboxConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: 1,
        };
        let outbox = Outbox::<FrameRecord>::open_with(&dir, config).expect("open");
        for f in ["a", "b", "c"] {
            outbox.append(record(f)).expect("append");
        }
        drop(outbox);
        // The `acked` file written, the segments not yet removed.
        std::fs::write(dir.join(ACKED_FILE), "2").expect("write");
        let outbox = Outbox::<FrameRecord>::open_with(&dir, config).expect("reopen");
        assert_eq!(segments(&dir), vec![segment_name(3)]);
        assert_eq!(outbox.depth(), 1);
        drop(outbox);
        std::fs::write(dir.join(ACKED_FILE), "3").expect("write");
        let outbox = Outbox::<FrameRecord>::open_with(&dir, config).expect("reopen");
        assert!(segments(&dir).is_empty());
        assert_eq!(outbox.append(record("d")).expect("append"), 4);
    }

    #[test]
    fn past_its_cap_it_refuses_and_keeps_what_it_has() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("outbox");
        let one = serde_json::to_vec(&record("a")).expect("json").len() as u64 + 1;
        let config = OutboxConfig {
            max_bytes: one * 2 + 1,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        };
        let outbox = Outbox::<FrameRecord>::open_with(&dir, config).expect("open");
        outbox.append(record("a")).expect("append");
        outbox.append(record("b")).expect("append");
        let err = outbox.append(record("c")).expect_err("full");
        assert!(is_full(&err), "{err}");
        assert!(err.to_string().contains("cap"), "{err}");
        assert_eq!(outbox.depth(), 2);
        // Room again once the control plane took them (their segment goes).
        outbox.ack(2).expect("ack");
        assert_eq!(outbox.append(record("c")).expect("append"), 3);
    }

    #[test]
    fn records_without_a_stream_file_are_not_sent_under_a_new_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("outbox");
        let outbox = Outbox::<FrameRecord>::open(&dir).expect("open");
        outbox.append(record("a")).expect("append");
        drop(outbox);
        std::fs::remove_file(dir.join(STREAM_FILE)).expect("rm");
        let err = Outbox::<FrameRecord>::open(&dir).err().expect("refused");
        assert!(err.to_string().contains("stream"), "{err}");
    }
}
