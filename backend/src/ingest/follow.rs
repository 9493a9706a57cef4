//! Reading log files for the line-format adapters: `open_log` for `deferwatch import`
//! (whole files, gzip or plain), and `Follower` for `deferwatch tail` (a growing file,
//! followed across rotation and restarts).
//!
//! A `Follower` remembers a position as the file's identity (device, inode and a hash of
//! its first bytes) plus the offset just past the last line it handed out. The identity
//! needs all three parts: after logrotate renames the file the same inode lives on under
//! another name, a deleted file's inode can be reused by the next one, and a file
//! truncated in place keeps its inode but not its content.
//!
//! The file is polled rather than watched with inotify: that needs no extra crate, works
//! on every filesystem (inotify misses changes made by other hosts on NFS), and a
//! truncation in place (copytruncate) has to be detected by comparing sizes and content
//! anyway, since no event says "this file now holds different data".
//!
//! Known limits, shared with `tail -F`: lines a writer appends to a rotated-away file
//! after the new file appeared and the old one was read to its end are not read (MTAs
//! and syslog daemons reopen their log promptly on rotation); lines written between
//! copytruncate's copy and its truncation are in the copy only; and if the file was
//! rotated more than once while the follower was down, only the newest rotated file
//! (found by inode) and the current file are read, not the ones in between.

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, Metadata};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// How long `next_batch` sleeps between looks at the file while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The longest line returned. A longer line is cut to its first `MAX_LINE_BYTES` and the
/// rest of it is dropped, so that a runaway writer (or a binary file given by mistake)
/// cannot make the follower hold unbounded memory. No MTA writes delivery lines anywhere
/// near this long.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How many leading bytes identify a file's content.
const HEAD_BYTES: usize = 256;

/// How much is read from the file at a time.
const CHUNK_BYTES: usize = 64 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens a log file for one pass; gzip detected by magic bytes.
///
/// Rotated logs are often compressed under names that do not end in `.gz` (or were
/// renamed by hand), so the content decides, not the name. Concatenated gzip members
/// (`cat a.gz b.gz`) are read as one stream. Decompression errors surface from the
/// reader's reads as `io::Error`s.
pub fn open_log(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let mut got = 0;
    // A read may return fewer bytes than asked (a pipe), so loop; reading the prefix and
    // chaining it back, rather than seeking, also works for files that cannot seek.
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let is_gzip = magic[..got] == GZIP_MAGIC;
    let reader = io::Cursor::new(magic).take(got as u64).chain(file);
    Ok(if is_gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(reader)))
    } else {
        Box::new(BufReader::new(reader))
    })
}

#[derive(thiserror::Error, Debug)]
pub enum FollowError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "state file {} is corrupt ({reason}); delete it to start over",
        path.display()
    )]
    CorruptState { path: PathBuf, reason: String },
    #[error(
        "state file {} holds the position in {saved}, not in {}; give each followed file its own state file",
        state.display(),
        path.display()
    )]
    StateForOtherFile {
        state: PathBuf,
        saved: String,
        path: PathBuf,
    },
    /// The state file stores the path as JSON text, which cannot hold such a path.
    #[error("{} is not valid UTF-8, so its position cannot be saved", .0.display())]
    NonUtf8Path(PathBuf),
}

fn io_at(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FollowError {
    move |source| FollowError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Where following starts when there is no saved position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// From the first byte of the file.
    Beginning,
    /// After the last complete line already in the file, like `tail -F` with `-n 0`.
    /// An unterminated last line is not skipped: it is still being written, and is
    /// returned whole once its newline arrives. A file that appears after `open` is
    /// read from its beginning either way, since all of it is new.
    End,
}

/// The state file's content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct SavedState {
    path: String,
    dev: u64,
    ino: u64,
    offset: u64,
    /// Hex SHA-256 of the file's first `head_len` bytes.
    head: String,
    head_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The file being read.
#[derive(Debug)]
struct Current {
    file: File,
    /// The name it was opened under, for messages (after a rotation, the old name).
    name: PathBuf,
    id: FileId,
    /// How far the file has been read into the buffer.
    read_off: u64,
    /// Its first bytes as last seen (up to `HEAD_BYTES`); a change means the file was
    /// truncated and rewritten in place.
    head: Vec<u8>,
    /// The followed path no longer names this file: once it is read to its end, the
    /// follower moves on to the file at the path.
    rotated: bool,
}

/// Follows one log file like `tail -F`; see the module documentation.
#[derive(Debug)]
pub struct Follower {
    /// Absolute, so that the saved position does not depend on the working directory.
    path: PathBuf,
    path_str: String,
    state_path: PathBuf,
    /// `None` while the path does not exist and there is nothing else to read.
    cur: Option<Current>,
    /// Bytes read from `cur`; those before `buf_pos` were already returned.
    buf: Vec<u8>,
    buf_pos: usize,
    /// The offset in `cur` just past the last line returned, which is what `commit`
    /// saves. Outside a cut line, `buf[buf_pos..]` is the file from here to `read_off`.
    consumed: u64,
    /// A line longer than `MAX_LINE_BYTES` was cut and the rest of it is being skipped.
    /// `consumed` stays at that line's start until its end is found, so a restart in the
    /// middle of it returns the cut line again (the store deduplicates it) rather than
    /// the tail of the line as if it were a line of its own.
    discarding: bool,
    /// What the state file holds, to skip rewriting it when nothing moved.
    saved: Option<SavedState>,
    /// An error met after some lines were already taken in the same poll: those lines
    /// are returned first (their position has moved on), the error on the next call.
    deferred_error: Option<FollowError>,
}

impl Follower {
    /// Opens `path` for following. If `state_path` holds a saved position for this path,
    /// resume from it (same file identity: device+inode and a hash of the file's first
    /// bytes, so a new file that reuses the inode or a file truncated while we were down
    /// is detected). If the saved file was rotated away while we were down, find it (same
    /// dev+inode) among the files in the same directory (e.g. FILE.1), read it from the
    /// saved offset to its end first, then the new FILE from 0. With no saved state,
    /// start at `start`.
    ///
    /// A path that does not exist yet is not an error: the follower waits for it.
    pub fn open(path: &Path, state_path: &Path, start: StartAt) -> Result<Follower, FollowError> {
        let abs = followed_path(path).map_err(io_at("resolving", path))?;
        let path_str = abs
            .to_str()
            .ok_or_else(|| FollowError::NonUtf8Path(abs.clone()))?
            .to_owned();
        let saved = load_state(state_path)?;
        let mut follower = Follower {
            path: abs,
            path_str,
            state_path: state_path.to_path_buf(),
            cur: None,
            buf: Vec::new(),
            buf_pos: 0,
            consumed: 0,
            discarding: false,
            saved: None,
            deferred_error: None,
        };
        match &saved {
            Some(state) if state.path != follower.path_str => {
                return Err(FollowError::StateForOtherFile {
                    state: state_path.to_path_buf(),
                    saved: state.path.clone(),
                    path: follower.path,
                });
            }
            Some(state) => follower.resume(state)?,
            None => follower.start_fresh(start)?,
        }
        if follower.cur.is_none() {
            tracing::warn!(path = %follower.path.display(), "log file does not exist (yet); waiting for it");
        }
        follower.saved = saved;
        Ok(follower)
    }

    /// The followed path (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn start_fresh(&mut self, start: StartAt) -> Result<(), FollowError> {
        let Some((file, meta)) = open_existing(&self.path)? else {
            return Ok(());
        };
        let offset = match start {
            StartAt::Beginning => 0,
            StartAt::End => {
                end_of_last_line(&file, meta.len()).map_err(io_at("reading", &self.path))?
            }
        };
        let name = self.path.clone();
        self.set_current(file, name, FileId::of(&meta), offset, false)
    }

    fn resume(&mut self, state: &SavedState) -> Result<(), FollowError> {
        let want = FileId {
            dev: state.dev,
            ino: state.ino,
        };
        match open_existing(&self.path)? {
            Some((file, meta)) if FileId::of(&meta) == want => {
                let offset = if matches_saved(&file, &meta, state)
                    .map_err(io_at("reading", &self.path))?
                {
                    state.offset
                } else {
                    tracing::info!(path = %self.path.display(), "log file was truncated or replaced while not followed; reading it from the start");
                    0
                };
                let name = self.path.clone();
                self.set_current(file, name, want, offset, false)
            }
            at_path => {
                if let Some((old, name)) = self.find_rotated(want, state)? {
                    tracing::info!(path = %self.path.display(), rotated = %name.display(), "log file was rotated while not followed; reading the rest of the old one first");
                    return self.set_current(old, name, want, state.offset, true);
                }
                let Some((file, meta)) = at_path else {
                    return Ok(());
                };
                tracing::warn!(path = %self.path.display(), offset = state.offset, "the file last followed is gone (rotated and compressed, or deleted): what it held past the saved offset is not read; reading the current file from the start");
                let name = self.path.clone();
                self.set_current(file, name, FileId::of(&meta), 0, false)
            }
        }
    }

    /// Looks for the saved file under another name in the same directory, as logrotate's
    /// rename leaves it.
    fn find_rotated(
        &self,
        want: FileId,
        state: &SavedState,
    ) -> Result<Option<(File, PathBuf)>, FollowError> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at("listing", dir)(e)),
        };
        for entry in entries {
            // An entry that vanishes or cannot be read while listing is not the one.
            let Ok(entry) = entry else { continue };
            let candidate = entry.path();
            let Ok(meta) = fs::metadata(&candidate) else {
                continue;
            };
            if FileId::of(&meta) != want || candidate == self.path {
                continue;
            }
            let Ok(file) = File::open(&candidate) else {
                continue;
            };
            // Check the open file itself: the name may have moved on since the listing.
            let Ok(meta) = file.metadata() else { continue };
            if FileId::of(&meta) == want
                && matches_saved(&file, &meta, state).map_err(io_at("reading", &candidate))?
            {
                return Ok(Some((file, candidate)));
            }
        }
        Ok(None)
    }

    fn set_current(
        &mut self,
        file: File,
        name: PathBuf,
        id: FileId,
        offset: u64,
        rotated: bool,
    ) -> Result<(), FollowError> {
        let head = read_head(&file).map_err(io_at("reading", &name))?;
        self.cur = Some(Current {
            file,
            name,
            id,
            read_off: offset,
            head,
            rotated,
        });
        self.buf.clear();
        self.buf_pos = 0;
        self.consumed = offset;
        self.discarding = false;
        Ok(())
    }

    /// Waits up to `wait` for lines; returns as soon as at least one complete line is
    /// available or `max_lines` (at least 1) are read, or an empty Vec on timeout.
    ///
    /// Only complete lines are returned, without their `\n` (and a `\r` before it); an
    /// unterminated last line is held until its newline arrives, except at the end of a
    /// rotated-away file, where nothing more will come. Invalid UTF-8 is replaced with
    /// U+FFFD. Lines longer than [`MAX_LINE_BYTES`] are cut.
    ///
    /// Cancel safe: lines are taken from the file only in the same synchronous step that
    /// returns them, so dropping the future (a `select!` on shutdown) loses nothing.
    pub async fn next_batch(
        &mut self,
        max_lines: usize,
        wait: Duration,
    ) -> Result<Vec<String>, FollowError> {
        let deadline = Instant::now().checked_add(wait);
        loop {
            let lines = run_blocking(|| self.poll(max_lines))?;
            if !lines.is_empty() {
                return Ok(lines);
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => POLL_INTERVAL,
            };
            if left.is_zero() {
                return Ok(lines);
            }
            tokio::time::sleep(left.min(POLL_INTERVAL)).await;
        }
    }

    /// Saves the position of everything returned so far, atomically (temp file in the
    /// same directory, fsync, rename, fsync of the directory). Call it only after the
    /// returned lines are stored: a crash then re-reads at most the lines returned since
    /// the last commit, which the store deduplicates by content.
    pub fn commit(&mut self) -> Result<(), FollowError> {
        let Some(cur) = &self.cur else {
            // Nothing was ever opened, so there is no newer position than the saved one.
            return Ok(());
        };
        let state = SavedState {
            path: self.path_str.clone(),
            dev: cur.id.dev,
            ino: cur.id.ino,
            offset: self.consumed,
            head: hex::encode(Sha256::digest(&cur.head)),
            head_len: cur.head.len(),
        };
        if self.saved.as_ref() == Some(&state) {
            return Ok(());
        }
        write_state(&self.state_path, &state)?;
        self.saved = Some(state);
        Ok(())
    }

    /// One look at the file: whatever complete lines are there, up to `max_lines`.
    fn poll(&mut self, max_lines: usize) -> Result<Vec<String>, FollowError> {
        if let Some(e) = self.deferred_error.take() {
            return Err(e);
        }
        let mut out = Vec::new();
        match self.poll_into(&mut out, max_lines.max(1)) {
            Err(e) if out.is_empty() => Err(e),
            Err(e) => {
                self.deferred_error = Some(e);
                Ok(out)
            }
            Ok(()) => Ok(out),
        }
    }

    fn poll_into(&mut self, out: &mut Vec<String>, max: usize) -> Result<(), FollowError> {
        self.take_lines(out, max);
        if out.len() >= max {
            return Ok(());
        }
        if self.cur.is_none() {
            let Some((file, meta)) = open_existing(&self.path)? else {
                return Ok(());
            };
            tracing::info!(path = %self.path.display(), "log file appeared");
            let name = self.path.clone();
            self.set_current(file, name, FileId::of(&meta), 0, false)?;
        }
        self.check_truncation()?;
        while out.len() < max {
            if self.read_chunk()? > 0 {
                self.take_lines(out, max);
                continue;
            }
            let Some(cur) = self.cur.as_mut() else { break };
            if cur.rotated {
                // The path was seen naming another file before this last read found
                // the end, so everything written to the old file before the new one
                // appeared has been read.
                self.flush_partial(out);
                if !self.switch_to_path()? {
                    break;
                }
                continue;
            }
            match fs::metadata(&self.path) {
                Ok(meta) if FileId::of(&meta) == cur.id => break,
                Ok(_) => {
                    tracing::info!(path = %self.path.display(), "log file rotated; finishing the old one");
                    cur.rotated = true;
                }
                // Renamed with no new file yet, or deleted: the writer may still be
                // appending to the old one, so keep reading it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(io_at("checking", &self.path)(e)),
            }
        }
        Ok(())
    }

    /// Moves from a drained rotated-away file to the file now at the path; false if the
    /// path does not exist at the moment.
    fn switch_to_path(&mut self) -> Result<bool, FollowError> {
        let Some((file, meta)) = open_existing(&self.path)? else {
            return Ok(false);
        };
        let id = FileId::of(&meta);
        if let Some(cur) = self.cur.as_mut()
            && cur.id == id
        {
            // Renamed back: it is still the file being read.
            cur.rotated = false;
            cur.name = self.path.clone();
            return Ok(true);
        }
        let name = self.path.clone();
        self.set_current(file, name, id, 0, false)?;
        Ok(true)
    }

    /// Notices a truncation in place (copytruncate), also one followed by enough new
    /// writes to pass our offset before this look, by the changed first bytes.
    fn check_truncation(&mut self) -> Result<(), FollowError> {
        let Some(cur) = self.cur.as_mut() else {
            return Ok(());
        };
        let size = cur
            .file
            .metadata()
            .map_err(io_at("checking", &cur.name))?
            .len();
        let head = read_head(&cur.file).map_err(io_at("reading", &cur.name))?;
        if size < cur.read_off || !head.starts_with(&cur.head) {
            tracing::info!(path = %cur.name.display(), "log file truncated; reading it again from the start");
            cur.read_off = 0;
            self.buf.clear();
            self.buf_pos = 0;
            self.consumed = 0;
            self.discarding = false;
        }
        cur.head = head;
        Ok(())
    }

    /// Reads the next chunk of the file into the buffer; 0 at its end.
    fn read_chunk(&mut self) -> Result<usize, FollowError> {
        let Some(cur) = self.cur.as_mut() else {
            return Ok(0);
        };
        self.buf.drain(..self.buf_pos);
        self.buf_pos = 0;
        let start = self.buf.len();
        self.buf.resize(start + CHUNK_BYTES, 0);
        let read = loop {
            match cur.file.read_at(&mut self.buf[start..], cur.read_off) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(start);
                return Err(io_at("reading", &cur.name)(e));
            }
        };
        self.buf.truncate(start + n);
        let chunk_off = cur.read_off;
        cur.read_off += n as u64;
        if self.discarding {
            // The buffer held nothing before this chunk (the cut line's start was dropped).
            match self.buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.discarding = false;
                    self.buf_pos = i + 1;
                    self.consumed = chunk_off + i as u64 + 1;
                }
                None => self.buf.clear(),
            }
        }
        Ok(n)
    }

    fn take_lines(&mut self, out: &mut Vec<String>, max: usize) {
        while out.len() < max && !self.discarding {
            let rest = &self.buf[self.buf_pos..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.push(to_line(&rest[..i]));
                    self.buf_pos += i + 1;
                    self.consumed += i as u64 + 1;
                }
                None => {
                    if rest.len() > MAX_LINE_BYTES {
                        out.push(to_line(rest));
                        self.buf_pos = self.buf.len();
                        self.discarding = true;
                    }
                    break;
                }
            }
        }
    }

    /// At the end of a rotated-away file: its unterminated last line will never be
    /// completed, so it is a line.
    fn flush_partial(&mut self, out: &mut Vec<String>) {
        if !self.discarding && self.buf_pos < self.buf.len() {
            out.push(to_line(&self.buf[self.buf_pos..]));
        }
        self.discarding = false;
        self.buf.clear();
        self.buf_pos = 0;
        if let Some(cur) = &self.cur {
            self.consumed = cur.read_off;
        }
    }
}

/// Runs the file system calls of one poll. They are short (a stat and a read of at most
/// a chunk from the page cache) but may block on a slow disk or NFS, so on the
/// multi-threaded runtime the worker is handed over first. The current-thread runtime
/// cannot do that (`block_in_place` panics there), and it is briefly blocked instead.
fn run_blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The path as saved in the state file: the same string whatever the working directory
/// or spelling (`log/../log/mail.log`) of a later run, so that it finds its position.
/// Only the directory is canonicalized: the file itself may not exist yet, and a
/// symlinked log file is followed by its name, like `tail -F`.
fn followed_path(path: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => match fs::canonicalize(dir) {
            Ok(dir) => Ok(dir.join(name)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(abs),
            Err(e) => Err(e),
        },
        _ => Ok(abs),
    }
}

fn to_line(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(MAX_LINE_BYTES)];
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// Opens a file to follow; `None` if it does not exist.
fn open_existing(path: &Path) -> Result<Option<(File, Metadata)>, FollowError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at("opening", path)(e)),
    };
    let meta = file.metadata().map_err(io_at("checking", path))?;
    Ok(Some((file, meta)))
}

/// The file's first `HEAD_BYTES` (fewer if it is shorter).
fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; HEAD_BYTES];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
}

/// Whether `file` still holds what the saved position was taken in.
fn matches_saved(file: &File, meta: &Metadata, state: &SavedState) -> io::Result<bool> {
    if meta.len() < state.offset {
        return Ok(false);
    }
    let head = read_head(file)?;
    Ok(head.len() >= state.head_len
        && hex::encode(Sha256::digest(&head[..state.head_len])) == state.head)
}

/// The offset just past the last newline of a file of `size` bytes, looking back at most
/// one maximal line; 0 if the whole file is one unterminated line.
fn end_of_last_line(file: &File, size: u64) -> io::Result<u64> {
    let floor = size.saturating_sub(MAX_LINE_BYTES as u64 + 1);
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut end = size;
    while end > floor {
        let start = end.saturating_sub(CHUNK_BYTES as u64).max(floor);
        let len = usize::try_from(end - start).unwrap_or(CHUNK_BYTES);
        match file.read_exact_at(&mut chunk[..len], start) {
            Ok(()) => {}
            // Truncated since it was measured: all it holds now is new.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        if let Some(i) = chunk[..len].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    // No newline in the last maximal line: either the file is one line still being
    // written (start at it), or the tail is a line too long to keep anyway (skip it).
    Ok(if floor == 0 { 0 } else { size })
}

fn load_state(path: &Path) -> Result<Option<SavedState>, FollowError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at("reading", path)(e)),
    };
    let corrupt = |reason: String| FollowError::CorruptState {
        path: path.to_path_buf(),
        reason,
    };
    let state: SavedState = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if state.head_len > HEAD_BYTES {
        return Err(corrupt(format!(
            "head_len {} is over {HEAD_BYTES}",
            state.head_len
        )));
    }
    if state.head.len() != 64 || hex::decode(&state.head).is_err() {
        return Err(corrupt("head is not a hex SHA-256".to_string()));
    }
    Ok(Some(state))
}

fn write_state(path: &Path, state: &SavedState) -> Result<(), FollowError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut json = serde_json::to_vec(state).map_err(|e| FollowError::Io {
        action: "writing",
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    json.push(b'\n');
    let mut tmp = tempfile::Builder::new()
        .prefix(".deferwatch-follow")
        .tempfile_in(dir)
        .map_err(io_at("creating a temporary file in", dir))?;
    tmp.write_all(&json).map_err(io_at("writing", tmp.path()))?;
    // Data first, then the rename, then the directory entry: after a crash the state
    // file is either the old one or the complete new one.
    tmp.as_file()
        .sync_all()
        .map_err(io_at("syncing", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io_at("replacing", path)(e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at("syncing", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    const QUIET: Duration = Duration::from_millis(450);

    fn append(path: &Path, bytes: &[u8]) {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    fn writer(path: &Path) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
    }

    /// Gathers lines until `n` have come (or ten seconds passed).
    async fn collect(f: &mut Follower, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n && std::time::Instant::now() < deadline {
            got.extend(f.next_batch(1000, Duration::from_secs(1)).await.unwrap());
        }
        got
    }

    async fn assert_quiet(f: &mut Follower) {
        assert_eq!(
            f.next_batch(1000, QUIET).await.unwrap(),
            Vec::<String>::new()
        );
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    struct Setup {
        _dir: tempfile::TempDir,
        log: PathBuf,
        rotated: PathBuf,
        state: PathBuf,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        Setup {
            log: dir.path().join("mail.log"),
            rotated: dir.path().join("mail.log.1"),
            state: dir.path().join("mail.log.state"),
            _dir: dir,
        }
    }

    #[tokio::test]
    async fn growth_with_partial_lines() {
        let s = setup();
        append(&s.log, b"one\ntw");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["one"]));
        assert_quiet(&mut f).await;
        append(&s.log, b"o\r\nthree\n\xffx\n");
        assert_eq!(
            collect(&mut f, 3).await,
            lines(&["two", "three", "\u{FFFD}x"])
        );
        assert_quiet(&mut f).await;
    }

    // The multi-threaded runtime takes the block_in_place path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn growth_on_the_multi_threaded_runtime() {
        let s = setup();
        append(&s.log, b"a\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["a"]));
        append(&s.log, b"b\n");
        assert_eq!(collect(&mut f, 1).await, lines(&["b"]));
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn start_at_end_skips_existing_content() {
        let s = setup();
        append(&s.log, b"old 1\nold 2\nhalf");
        let mut f = Follower::open(&s.log, &s.state, StartAt::End).unwrap();
        assert_quiet(&mut f).await;
        append(&s.log, b" done\nnew\n");
        assert_eq!(collect(&mut f, 2).await, lines(&["half done", "new"]));
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn start_at_end_with_saved_state_resumes_instead() {
        let s = setup();
        append(&s.log, b"1\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["1"]));
        f.commit().unwrap();
        drop(f);
        append(&s.log, b"2\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::End).unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["2"]));
    }

    #[tokio::test]
    async fn max_lines_bounds_a_batch_and_commit_saves_only_returned_lines() {
        let s = setup();
        append(&s.log, b"l1\nl2\nl3\nl4\nl5\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        let wait = Duration::from_secs(2);
        assert_eq!(f.next_batch(2, wait).await.unwrap(), lines(&["l1", "l2"]));
        assert_eq!(f.next_batch(2, wait).await.unwrap(), lines(&["l3", "l4"]));
        f.commit().unwrap();
        drop(f);
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["l5"]));
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn rename_rotation_reads_the_old_file_to_its_end_first() {
        let s = setup();
        let mut old = writer(&s.log);
        old.write_all(b"1\n2\n").unwrap();
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["1", "2"]));

        fs::rename(&s.log, &s.rotated).unwrap();
        // The writer has not reopened yet: it keeps appending to the renamed file.
        old.write_all(b"3\n").unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["3"]));
        assert_quiet(&mut f).await;
        old.write_all(b"4\n5").unwrap();
        let mut new = writer(&s.log);
        new.write_all(b"6\n").unwrap();
        assert_eq!(collect(&mut f, 3).await, lines(&["4", "5", "6"]));
        new.write_all(b"7\n").unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["7"]));
        assert_quiet(&mut f).await;

        f.commit().unwrap();
        drop(f);
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn copytruncate_restarts_at_the_beginning() {
        let s = setup();
        let mut w = writer(&s.log);
        w.write_all(b"a\nb\n").unwrap();
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["a", "b"]));

        fs::copy(&s.log, &s.rotated).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&s.log)
            .unwrap()
            .set_len(0)
            .unwrap();
        w.write_all(b"c\n").unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["c"]));

        // Truncated again and regrown past our offset before the next look: the size
        // alone does not show it, the changed first bytes do.
        OpenOptions::new()
            .write(true)
            .open(&s.log)
            .unwrap()
            .set_len(0)
            .unwrap();
        w.write_all(b"dddddddd\ne\n").unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["dddddddd", "e"]));
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn restart_resumes_after_the_committed_position() {
        let s = setup();
        append(&s.log, b"1\n2\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["1", "2"]));
        f.commit().unwrap();
        drop(f);

        let saved: serde_json::Value =
            serde_json::from_slice(&fs::read(&s.state).unwrap()).unwrap();
        let meta = fs::metadata(&s.log).unwrap();
        let canonical = fs::canonicalize(s.log.parent().unwrap())
            .unwrap()
            .join("mail.log");
        assert_eq!(saved["path"], canonical.to_str().unwrap());
        assert_eq!(saved["dev"], meta.dev());
        assert_eq!(saved["ino"], meta.ino());
        assert_eq!(saved["offset"], 4);
        assert_eq!(saved["head_len"], 4);
        assert_eq!(saved["head"], hex::encode(Sha256::digest(b"1\n2\n")));

        append(&s.log, b"3\n4\n");
        // Spelled differently, it is still the same file with the same saved position.
        let sub = s.log.parent().unwrap().join("sub");
        fs::create_dir(&sub).unwrap();
        let respelled = sub.join("..").join("mail.log");
        let mut f = Follower::open(&respelled, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["3", "4"]));
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn uncommitted_lines_are_delivered_again_after_a_restart() {
        let s = setup();
        append(&s.log, b"1\n2\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["1", "2"]));
        f.commit().unwrap();
        append(&s.log, b"3\n4\n");
        assert_eq!(collect(&mut f, 2).await, lines(&["3", "4"]));
        drop(f);

        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["3", "4"]));
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn restart_after_a_rotation_while_down_finishes_the_old_file() {
        let s = setup();
        append(&s.log, b"1\n2\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["1", "2"]));
        f.commit().unwrap();
        drop(f);

        append(&s.log, b"3\n4");
        fs::rename(&s.log, &s.rotated).unwrap();
        append(&s.log, b"5\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 3).await, lines(&["3", "4", "5"]));
        assert_quiet(&mut f).await;
        f.commit().unwrap();
        drop(f);

        append(&s.log, b"6\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["6"]));
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn restart_with_the_old_file_gone_reads_the_new_one_from_the_start() {
        let s = setup();
        append(&s.log, b"1\n2\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["1", "2"]));
        f.commit().unwrap();
        drop(f);

        fs::remove_file(&s.log).unwrap();
        append(&s.log, b"A\nB\nC\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 3).await, lines(&["A", "B", "C"]));
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn restart_with_the_file_rewritten_in_place_reads_it_from_the_start() {
        let s = setup();
        append(&s.log, b"first\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["first"]));
        f.commit().unwrap();
        drop(f);

        let ino = fs::metadata(&s.log).unwrap().ino();
        // Same inode, longer than the saved offset: only the head hash tells.
        fs::write(&s.log, b"other content\nsecond\n").unwrap();
        assert_eq!(fs::metadata(&s.log).unwrap().ino(), ino);
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(
            collect(&mut f, 2).await,
            lines(&["other content", "second"])
        );
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn restart_with_the_file_truncated_while_down_reads_it_from_the_start() {
        let s = setup();
        append(&s.log, b"aaaa\nbbbb\n");
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 2).await, lines(&["aaaa", "bbbb"]));
        f.commit().unwrap();
        drop(f);

        fs::write(&s.log, b"aaaa\n").unwrap();
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        assert_eq!(collect(&mut f, 1).await, lines(&["aaaa"]));
        assert_quiet(&mut f).await;
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let s = setup();
        append(&s.log, b"1\n");
        fs::write(&s.state, b"{not json").unwrap();
        let err = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap_err();
        assert!(matches!(err, FollowError::CorruptState { .. }), "{err:?}");
        assert!(err.to_string().contains(s.state.to_str().unwrap()), "{err}");

        fs::write(
            &s.state,
            br#"{"path":"/x","dev":1,"ino":2,"offset":3,"head":"zz","head_len":1}"#,
        )
        .unwrap();
        let err = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap_err();
        assert!(matches!(err, FollowError::CorruptState { .. }), "{err:?}");
    }

    #[test]
    fn a_state_file_of_another_log_is_refused() {
        let s = setup();
        let head = hex::encode(Sha256::digest(b""));
        fs::write(
            &s.state,
            format!(
                r#"{{"path":"/var/log/other.log","dev":1,"ino":2,"offset":0,"head":"{head}","head_len":0}}"#
            ),
        )
        .unwrap();
        let err = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap_err();
        assert!(
            matches!(err, FollowError::StateForOtherFile { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_file_is_picked_up_when_it_appears() {
        let s = setup();
        let mut f = Follower::open(&s.log, &s.state, StartAt::End).unwrap();
        f.commit().unwrap();
        assert!(!s.state.exists());
        assert_quiet(&mut f).await;
        append(&s.log, b"1\n2\n");
        assert_eq!(collect(&mut f, 2).await, lines(&["1", "2"]));

        fs::remove_file(&s.log).unwrap();
        assert_quiet(&mut f).await;
        append(&s.log, b"3\n");
        assert_eq!(collect(&mut f, 1).await, lines(&["3"]));
        assert_quiet(&mut f).await;
    }

    #[tokio::test]
    async fn long_lines_are_cut() {
        let s = setup();
        let mut long = vec![b'x'; MAX_LINE_BYTES + 10];
        long.extend_from_slice(b"\nshort\n");
        append(&s.log, &long);
        let mut f = Follower::open(&s.log, &s.state, StartAt::Beginning).unwrap();
        let got = collect(&mut f, 2).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], "x".repeat(MAX_LINE_BYTES));
        assert_eq!(got[1], "short");

        // Unterminated and growing: cut once, the rest dropped up to its newline.
        let mut got = Vec::new();
        for _ in 0..3 {
            append(&s.log, &vec![b'y'; MAX_LINE_BYTES / 2]);
            got.extend(f.next_batch(1000, Duration::ZERO).await.unwrap());
        }
        assert_eq!(got, vec!["y".repeat(MAX_LINE_BYTES)]);
        append(&s.log, b"yyy\nnext\n");
        assert_eq!(collect(&mut f, 1).await, lines(&["next"]));
        assert_quiet(&mut f).await;
    }

    #[test]
    fn open_log_detects_gzip_by_magic_bytes() {
        use flate2::Compression;
        use flate2::write::GzEncoder;

        let dir = tempfile::tempdir().unwrap();
        // No .gz in the name; two concatenated members, as `cat a.gz b.gz` makes.
        let gz = dir.path().join("mail.log.1");
        let mut bytes = Vec::new();
        for part in [&b"one\ntwo\n"[..], b"three\n"] {
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            enc.write_all(part).unwrap();
            bytes.extend(enc.finish().unwrap());
        }
        fs::write(&gz, &bytes).unwrap();
        let read: Vec<String> = open_log(&gz).unwrap().lines().map(|l| l.unwrap()).collect();
        assert_eq!(read, lines(&["one", "two", "three"]));

        let plain = dir.path().join("mail.log");
        fs::write(&plain, b"plain\nlog\n").unwrap();
        let read: Vec<String> = open_log(&plain)
            .unwrap()
            .lines()
            .map(|l| l.unwrap())
            .collect();
        assert_eq!(read, lines(&["plain", "log"]));

        for short in [&b""[..], b"\x1f"] {
            fs::write(&plain, short).unwrap();
            let mut all = Vec::new();
            open_log(&plain).unwrap().read_to_end(&mut all).unwrap();
            assert_eq!(all, short);
        }
    }
}
