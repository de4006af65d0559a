//! One output file on its way to disk: written under a hidden temporary name,
//! hashed as it is written, then synced and renamed into place whole.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::SinkError;

/// A `Write` that counts and hashes what passes through it.
pub struct HashingWriter {
    inner: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A file being written: its hidden path now, its final path once complete.
pub struct PendingFile {
    pub temp_path: PathBuf,
    pub final_path: PathBuf,
}

/// A complete file in its final place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FinishedFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

impl PendingFile {
    /// `final_path`'s directory is created; the temporary file sits beside it as
    /// `.<name>.tmp`, which readers of the directory skip.
    pub fn create(final_path: PathBuf) -> Result<(PendingFile, HashingWriter), SinkError> {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|source| SinkError::io("create directory", dir, source))?;
        PendingFile::create_in(final_path, false)
    }

    /// Like [`PendingFile::create`], for sensitive data: the directory is made
    /// owner-only (0700) and the file is created owner-only (0600) before a
    /// byte is written; the rename keeps the mode.
    pub fn create_private(final_path: PathBuf) -> Result<(PendingFile, HashingWriter), SinkError> {
        create_private_dir(final_path.parent().unwrap_or(Path::new(".")))?;
        PendingFile::create_in(final_path, true)
    }

    fn create_in(
        final_path: PathBuf,
        private: bool,
    ) -> Result<(PendingFile, HashingWriter), SinkError> {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp_path = dir.join(format!(".{name}.tmp"));
        let file = open_for_writing(&temp_path, private)
            .map_err(|source| SinkError::io("create", &temp_path, source))?;
        let writer = HashingWriter {
            inner: BufWriter::with_capacity(1 << 16, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        Ok((
            PendingFile {
                temp_path,
                final_path,
            },
            writer,
        ))
    }

    /// Flushes and syncs the data under the temporary name: after this the
    /// bytes are on disk, but no reader sees the file yet.
    pub fn seal(self, writer: HashingWriter) -> Result<SealedFile, SinkError> {
        let HashingWriter {
            inner,
            hasher,
            bytes,
        } = writer;
        let file = inner
            .into_inner()
            .map_err(|e| SinkError::io("flush", &self.temp_path, e.into_error()))?;
        file.sync_all()
            .map_err(|source| SinkError::io("sync", &self.temp_path, source))?;
        Ok(SealedFile {
            temp_path: self.temp_path,
            finished: FinishedFile {
                path: self.final_path,
                bytes,
                sha256: hex::encode(hasher.finalize()),
            },
        })
    }

    /// Seals and publishes in one go, for files outside the ledger's protocol
    /// (the failures report, the manifest).
    pub fn finish(self, writer: HashingWriter) -> Result<FinishedFile, SinkError> {
        self.seal(writer)?.publish()
    }

    /// Removes the temporary file of a write that will not complete.
    pub fn abandon(self) {
        let _ = fs::remove_file(&self.temp_path);
    }
}

/// A complete file still under its temporary name.
pub struct SealedFile {
    pub temp_path: PathBuf,
    /// Where it goes, and what it holds.
    pub finished: FinishedFile,
}

impl SealedFile {
    /// Renames the file into place and syncs the directory, so a crash leaves
    /// either no file or the whole file.
    pub fn publish(self) -> Result<FinishedFile, SinkError> {
        let path = &self.finished.path;
        fs::rename(&self.temp_path, path)
            .map_err(|source| SinkError::io("rename into place", path, source))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        Ok(self.finished)
    }

    pub fn abandon(self) {
        let _ = fs::remove_file(&self.temp_path);
    }
}

/// Creates (or truncates) a file for writing; `private` makes it owner-only,
/// also when a file of that name was left with a wider mode.
fn open_for_writing(path: &Path, private: bool) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        return Ok(file);
    }
    #[cfg(not(unix))]
    let _ = private;
    options.open(path)
}

/// Creates `dir` (and missing parents) readable by the owner only, and makes
/// an existing `dir` owner-only too.
pub fn create_private_dir(dir: &Path) -> Result<(), SinkError> {
    let failed = |source| SinkError::io("create directory", dir, source);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(failed)
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir).map_err(failed)
}

/// Makes a rename durable.
pub fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SinkError::io("sync directory", dir, source))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_owner_only_from_the_first_byte_to_their_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("content");
        // A directory left with a wider mode is tightened too.
        fs::create_dir_all(&table).unwrap();
        fs::set_permissions(&table, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&table).unwrap();
        let part = table.join("date=2026-01-02");
        let (pending, mut out) = PendingFile::create_private(part.join("a.csv")).unwrap();
        assert_eq!(mode(&pending.temp_path), 0o600);
        out.write_all(b"secret prompt").unwrap();
        let done = pending.finish(out).unwrap();
        assert_eq!(mode(&done.path), 0o600);
        assert_eq!((mode(&table), mode(&part)), (0o700, 0o700));
    }
}
