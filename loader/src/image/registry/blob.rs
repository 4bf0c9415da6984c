//! Blobs from a registry, verified while they stream: the bytes are hashed as they
//! are written, and a blob whose digest or size is not its descriptor's is refused
//! and deleted (what the registry says in `Docker-Content-Digest` is not read). A
//! download that breaks off is resumed with `Range` where it stopped, in this run or
//! the next (the partial file stays in the store's `downloads/`), and the resumed
//! blob is verified whole.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::client::{Client, Payload};
use super::RegistryError;
use crate::image::digest::Digest;

/// Attempts of one blob whose stream breaks off.
const ATTEMPTS: u32 = 5;

/// Removes the partial blobs in `dir` (the store's `downloads/`) that no pull is
/// downloading (`image prune`): those it can lock.
pub fn remove_idle(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let file = File::open(&path)?;
        // SAFETY: a descriptor owned by `file`, which outlives the lock.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// A small blob (an image configuration) in memory, verified.
pub fn fetch_small(
    client: &Client,
    path: &str,
    digest: &Digest,
    size: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    if size > 16 << 20 {
        return Err(RegistryError::Invalid(format!(
            "{what} {digest}: {size} bytes is too large for a configuration"
        )));
    }
    let response = client.send(
        "GET",
        &format!("{path}/blobs/{digest}"),
        &[],
        &Payload::None,
    )?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(client.status_error(&format!("{what} {digest}"), status, response));
    }
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Unreachable {
            registry: client.domain().to_string(),
            reason: crate::describe_io(&e),
        })?;
    check(&Digest::of(&bytes), bytes.len() as u64, digest, size, what)?;
    Ok(bytes)
}

fn check(
    got: &Digest,
    count: u64,
    digest: &Digest,
    size: u64,
    what: &str,
) -> Result<(), RegistryError> {
    if got != digest {
        return Err(RegistryError::Invalid(format!(
            "{what} {digest}: the registry sent content with digest {got}: refused"
        )));
    }
    if count != size {
        return Err(RegistryError::Invalid(format!(
            "{what} {digest}: {count} bytes, the manifest says {size}: refused"
        )));
    }
    Ok(())
}

/// Downloads blob `digest` of `size` bytes into `dest`, resuming what an earlier
/// attempt left there; `feed` is told of every byte written (and of a start over).
/// On any refusal `dest` is removed.
pub fn download(
    client: &Client,
    path: &str,
    digest: &Digest,
    size: u64,
    dest: &Path,
    feed: &Feed,
) -> Result<(), RegistryError> {
    let io = |error| RegistryError::Io {
        path: dest.to_path_buf(),
        error,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dest)
        .map_err(io)?;
    // SAFETY: a descriptor owned by `file`, alive for the whole download; another
    // capsule pulling the same blob waits here, then resumes or finds it complete.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io(io::Error::last_os_error()));
    }
    let result = download_locked(client, path, digest, size, &mut file, feed);
    if let Err(RegistryError::Invalid(_)) = &result {
        let _ = fs::remove_file(dest);
    }
    result
}

fn download_locked(
    client: &Client,
    path: &str,
    digest: &Digest,
    size: u64,
    file: &mut File,
    feed: &Feed,
) -> Result<(), RegistryError> {
    let what = "blob";
    let io_err = |error| RegistryError::Io {
        path: format!("download of {digest}").into(),
        error,
    };
    let (mut hasher, mut have) = hash_existing(file, size).map_err(io_err)?;
    let resumed_from = have;
    if have > 0 {
        log::info!("{digest}: resuming at byte {have} of {size}");
        feed.wrote(have);
    }
    let mut attempt = 0;
    while have < size {
        attempt += 1;
        let range = format!("bytes={have}-");
        let headers: Vec<(&str, &str)> = if have > 0 {
            vec![("Range", range.as_str())]
        } else {
            vec![]
        };
        let response = client.send(
            "GET",
            &format!("{path}/blobs/{digest}"),
            &headers,
            &Payload::None,
        )?;
        let status = response.status().as_u16();
        match status {
            206 if have > 0 && content_range_start(&response) == Some(have) => {}
            200 | 206 => {
                // The whole blob again (the registry ignored Range): start over.
                if have > 0 {
                    log::info!("{digest}: the registry sent the whole blob; starting over");
                    feed.restart();
                }
                file.set_len(0).map_err(io_err)?;
                file.seek(SeekFrom::Start(0)).map_err(io_err)?;
                hasher = Sha256::new();
                have = 0;
            }
            416 if have > 0 => break,
            _ => return Err(client.status_error(&format!("{what} {digest}"), status, response)),
        }
        file.seek(SeekFrom::Start(have)).map_err(io_err)?;
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let broke = loop {
            match reader.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    if have + n as u64 > size {
                        return Err(RegistryError::Invalid(format!(
                            "{what} {digest}: more than the {size} bytes the manifest says: refused"
                        )));
                    }
                    file.write_all(&buf[..n]).map_err(io_err)?;
                    hasher.update(&buf[..n]);
                    have += n as u64;
                    feed.wrote(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        match broke {
            Some(e) if attempt < ATTEMPTS => {
                log::info!(
                    "{digest}: the download broke off at byte {have} ({}); resuming",
                    crate::describe_io(&e)
                );
                std::thread::sleep(Duration::from_millis(250) * 2u32.pow(attempt - 1));
            }
            Some(e) => {
                return Err(RegistryError::Unreachable {
                    registry: client.domain().to_string(),
                    reason: format!("{what} {digest}: {}", crate::describe_io(&e)),
                })
            }
            None if have < size => {
                return Err(RegistryError::Invalid(format!(
                    "{what} {digest}: {have} bytes, the manifest says {size}: refused"
                )))
            }
            None => {}
        }
    }
    // Not synced: nothing unpacked from it is either, and a torn blob is found by its
    // digest (the next pull hashes what it resumes; a push is checked by the registry).
    let got = Digest::parse(&format!("sha256:{:x}", hasher.finalize()))
        .map_err(RegistryError::Invalid)?;
    if got != *digest && resumed_from > 0 {
        // What an earlier run left may be what was wrong: once more from the start.
        log::info!("{digest}: the resumed blob does not match; downloading it again");
        feed.restart();
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        return download_locked(client, path, digest, size, file, feed);
    }
    check(&got, have, digest, size, what)
}

/// Hashes what an earlier attempt left in `file` (nothing when it is longer than
/// the blob can be).
fn hash_existing(file: &mut File, size: u64) -> io::Result<(Sha256, u64)> {
    let len = file.metadata()?.len();
    let mut hasher = Sha256::new();
    if len > size {
        file.set_len(0)?;
        return Ok((hasher, 0));
    }
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut have = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        have += n as u64;
    }
    Ok((hasher, have))
}

/// The first byte of a 206's `Content-Range: bytes FIRST-LAST/SIZE`.
fn content_range_start(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let text = response.headers().get("content-range")?.to_str().ok()?;
    let range = text.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// What a download has written so far, for a reader that unpacks the blob while it
/// arrives ([`Feed::reader`]) and for a progress bar.
pub struct Feed<'a> {
    state: Mutex<FeedState>,
    changed: Condvar,
    progress: &'a (dyn Fn(u64) + Sync),
}

#[derive(Default)]
struct FeedState {
    written: u64,
    /// Bumped when the file is truncated to start over.
    generation: u32,
    finished: bool,
}

impl<'a> Feed<'a> {
    pub fn new(progress: &'a (dyn Fn(u64) + Sync)) -> Feed<'a> {
        Feed {
            state: Mutex::new(FeedState::default()),
            changed: Condvar::new(),
            progress,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wrote(&self, bytes: u64) {
        (self.progress)(bytes);
        self.state().written += bytes;
        self.changed.notify_all();
    }

    fn restart(&self) {
        let mut state = self.state();
        state.written = 0;
        state.generation += 1;
        drop(state);
        self.changed.notify_all();
    }

    /// The download ended (well or not): a reader gets the end of the stream.
    pub fn finish(&self) {
        self.state().finished = true;
        self.changed.notify_all();
    }

    /// Waits until the file exists (something was written, or the download ended).
    pub fn wait_started(&self) {
        let mut state = self.state();
        while state.written == 0 && !state.finished {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A reader of `file` (the one being downloaded) that waits for bytes not yet
    /// written, ends where the download ended, and fails when it starts over.
    pub fn reader(&'a self, file: File) -> impl Read + 'a {
        let generation = self.state().generation;
        FeedReader {
            feed: self,
            file,
            offset: 0,
            generation,
        }
    }
}

struct FeedReader<'a> {
    feed: &'a Feed<'a>,
    file: File,
    offset: u64,
    generation: u32,
}

impl Read for FeedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut state = self.feed.state();
        loop {
            if state.generation != self.generation {
                return Err(io::Error::other("the download started over"));
            }
            if self.offset < state.written {
                let n = (state.written - self.offset).min(buf.len() as u64) as usize;
                drop(state);
                let n = self.file.read_at(&mut buf[..n], self.offset)?;
                self.offset += n as u64;
                return Ok(n);
            }
            if state.finished {
                return Ok(0);
            }
            state = self
                .feed
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("capsule-feed-{}-{name}", std::process::id()))
    }

    #[test]
    fn a_feed_reader_waits_for_what_is_written_and_ends_with_the_download() {
        let path = temp_file("grow");
        let mut writer = File::create(&path).unwrap();
        let progress = |_| {};
        let feed = Feed::new(&progress);
        let read = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                feed.wait_started();
                let mut all = Vec::new();
                feed.reader(File::open(&path).unwrap())
                    .read_to_end(&mut all)
                    .map(|_| all)
            });
            for chunk in [&b"hello "[..], b"growing ", b"file"] {
                writer.write_all(chunk).unwrap();
                feed.wrote(chunk.len() as u64);
            }
            feed.finish();
            reader.join().unwrap()
        });
        assert_eq!(read.unwrap(), b"hello growing file");
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn a_feed_reader_fails_when_the_download_starts_over() {
        let path = temp_file("restart");
        let mut writer = File::create(&path).unwrap();
        let progress = |_| {};
        let feed = Feed::new(&progress);
        writer.write_all(b"wrong").unwrap();
        feed.wrote(5);
        let mut reader = feed.reader(File::open(&path).unwrap());
        let mut buf = [0u8; 3];
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        feed.restart();
        assert!(reader.read(&mut buf).is_err());
        let _ = fs::remove_file(&path);
    }
}
