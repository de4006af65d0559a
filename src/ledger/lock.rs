//! One process per ledger: an exclusive lock on `<ledger>.lock`, holding the
//! owner's PID so a second process can say who has it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::LedgerError;

/// Held for the life of a run; the OS releases it if the process dies.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    pub path: PathBuf,
}

impl StateLock {
    pub fn acquire(ledger_path: &Path) -> Result<StateLock, LedgerError> {
        let path = lock_path(ledger_path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|source| LedgerError::io("create directory", dir, source))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| LedgerError::io("open lock file", &path, source))?;
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let pid = holder(&mut file);
                    // Our own PID: this process let the lock go a moment ago,
                    // but a child being spawned by another thread still holds
                    // a copy of the descriptor until its `exec` closes it.
                    if pid == Some(std::process::id()) && tries < OWN_RELEASE_TRIES {
                        tries += 1;
                        std::thread::sleep(OWN_RELEASE_WAIT);
                        continue;
                    }
                    return Err(LedgerError::Locked { path, pid });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(LedgerError::io("lock", &path, source));
                }
            }
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        write_pid(&mut file).map_err(|source| LedgerError::io("write", &path, source))?;
        Ok(StateLock { _file: file, path })
    }
}

/// How long to wait for a lock this process itself released (see
/// [`StateLock::acquire`]): 50 × 20 ms.
const OWN_RELEASE_TRIES: u32 = 50;
const OWN_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// The PID the lock file names.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn lock_path(ledger_path: &Path) -> PathBuf {
    let mut name = ledger_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    ledger_path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state").join("genledger.db");
        let first = StateLock::acquire(&db).unwrap();
        match StateLock::acquire(&db) {
            Err(LedgerError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        assert!(StateLock::acquire(&db).is_ok(), "released with its holder");
    }
}
