//! The state directory's writer lock: one `steel run` or `steel retract` at a time.
//!
//! `state/lock` is held with an exclusive `flock` for the whole run and names its holder
//! (`pid host started-at`). The kernel releases the lock when the holder exits, however it
//! exits, so a lock that can be taken is never held by a running process. A holder that exits
//! normally empties the file first; one that was killed leaves its line behind, and the next
//! run reports that stale lock (who held it and since when) as it takes it over.
//!
//! The file is never deleted: deleting it would let two processes lock two different files
//! of the same name. `flock` on network file systems is only as good as the file system's
//! support for it; the holder's host is recorded so a message can name it.

use crate::pipeline::state::{StateError, io_error};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub const LOCK: &str = "lock";

/// A held lock; released (and its holder line cleared) when dropped.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    /// The line a killed earlier holder left, if the lock was taken over from one.
    pub stale: Option<String>,
}

impl StateLock {
    /// Take the lock of state directory `dir`, or say who holds it.
    pub fn take(dir: &Path) -> Result<StateLock, StateError> {
        let path = dir.join(LOCK);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = holder_line(&mut file, &path)?;
                return Err(StateError::Invalid {
                    dir: dir.to_path_buf(),
                    reason: format!(
                        "it is in use by another steel run ({}); wait for it to finish or stop it",
                        describe(&holder)
                    ),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(&path)(e)),
        }
        let left = holder_line(&mut file, &path)?;
        let stale = (!left.is_empty()).then(|| describe(&left));
        write_holder(&mut file, &path)?;
        Ok(StateLock { file, stale })
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Best effort: if clearing fails, the next run reports a stale lock, which is true.
        let _ = self.file.set_len(0).and_then(|()| self.file.sync_all());
        let _ = self.file.unlock();
    }
}

fn holder_line(file: &mut File, path: &Path) -> Result<String, StateError> {
    let mut text = String::new();
    file.rewind()
        .and_then(|()| file.read_to_string(&mut text))
        .map_err(io_error(path))?;
    Ok(text.trim().to_string())
}

fn write_holder(file: &mut File, path: &Path) -> Result<(), StateError> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let line = format!("{} {} {since}\n", std::process::id(), host_name());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(line.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))
}

/// `pid host since` as words for a message.
fn describe(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [pid, host, since] => format!("pid {pid} on host {host}, since {since} s after 1970"),
        _ if line.is_empty() => "holder unknown".into(),
        _ => format!("holder `{line}`"),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::take(dir.path()).unwrap();
        assert_eq!(first.stale, None);
        let err = StateLock::take(dir.path()).unwrap_err().to_string();
        let pid = std::process::id().to_string();
        assert!(err.contains("in use by another steel run"), "{err}");
        assert!(err.contains(&format!("pid {pid} on host ")), "{err}");
        drop(first);
        let again = StateLock::take(dir.path()).unwrap();
        assert_eq!(again.stale, None, "a released lock is not stale");
    }

    #[test]
    fn a_lock_left_by_a_killed_run_is_reported_when_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // What a killed holder leaves: its line, and no flock (the kernel dropped it).
        std::fs::write(dir.path().join(LOCK), "4242 crashed-host 1700000000\n").unwrap();
        let lock = StateLock::take(dir.path()).unwrap();
        assert_eq!(
            lock.stale.as_deref(),
            Some("pid 4242 on host crashed-host, since 1700000000 s after 1970")
        );
        let line = std::fs::read_to_string(dir.path().join(LOCK)).unwrap();
        assert!(
            line.starts_with(&format!("{} ", std::process::id())),
            "{line}"
        );
        drop(lock);
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK)).unwrap(), "");
    }
}
