//! The file primitives of the commit protocol: a file is written under a
//! hidden temporary name, hashed as it is written, synced, then renamed into
//! place whole. This module knows nothing of the ledger; the protocol that
//! records each step lives in `ledger::commit`.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A file operation that failed, with the path it failed on.
///
/// A full device, a used-up quota or a file size limit is said in words in
/// the message itself, with the OS error number once, and the `io::Error` is
/// not offered as the source too: printed as a chain it would only repeat
/// the same cause ("No space left on device" twice). Any other error is the
/// source, so the chain reads `failed to ACTION `PATH`: OS error`.
#[derive(Debug)]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl FileError {
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> FileError {
        FileError {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {} `{}`", self.action, self.path.display())?;
        if let Some(limit) = out_of_space(&self.source) {
            write!(f, ": {limit}")?;
            if let Some(code) = self.source.raw_os_error() {
                write!(f, " (os error {code})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match out_of_space(&self.source) {
            Some(_) => None,
            None => Some(&self.source),
        }
    }
}

/// What ran out, in words, when a write failed for lack of room:
/// ENOSPC, EDQUOT or EFBIG.
fn out_of_space(error: &io::Error) -> Option<&'static str> {
    match error.kind() {
        io::ErrorKind::StorageFull => Some("no space left on the device holding it"),
        io::ErrorKind::QuotaExceeded => Some("the disk quota on the device holding it is used up"),
        io::ErrorKind::FileTooLarge => Some(
            "it would grow past the largest file size allowed here, by the file system or by `ulimit -f`",
        ),
        _ => None,
    }
}

/// The hidden name a file is written under before it is renamed to
/// `final_path`: `.<name>.tmp` beside it, which readers of the directory skip.
pub fn temp_path_for(final_path: &Path) -> PathBuf {
    let dir = final_path.parent().unwrap_or(Path::new("."));
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.tmp"))
}

/// Whether a file name is one [`temp_path_for`] gives.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// A `Write` that counts and hashes what passes through it.
pub struct HashingWriter {
    inner: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
    /// The final path of the file being written, for error messages: the
    /// encoders above see only a `Write`, and their errors must name the file.
    path: PathBuf,
}

impl HashingWriter {
    /// The final path of the file being written (it is written under its
    /// hidden temporary name until published).
    pub fn path(&self) -> &Path {
        &self.path
    }
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
    pub fn create(final_path: PathBuf) -> Result<(PendingFile, HashingWriter), FileError> {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)
            .map_err(|source| FileError::new("create directory", dir, source))?;
        PendingFile::create_in(final_path, false)
    }

    /// Like [`PendingFile::create`], for sensitive data: the directory is made
    /// owner-only (0700) and the file is created owner-only (0600) before a
    /// byte is written; the rename keeps the mode.
    pub fn create_private(final_path: PathBuf) -> Result<(PendingFile, HashingWriter), FileError> {
        create_private_dir(final_path.parent().unwrap_or(Path::new(".")))?;
        PendingFile::create_in(final_path, true)
    }

    fn create_in(
        final_path: PathBuf,
        private: bool,
    ) -> Result<(PendingFile, HashingWriter), FileError> {
        let temp_path = temp_path_for(&final_path);
        let file = open_for_writing(&temp_path, private)
            .map_err(|source| FileError::new("create", &temp_path, source))?;
        let writer = HashingWriter {
            inner: BufWriter::with_capacity(1 << 16, file),
            hasher: Sha256::new(),
            bytes: 0,
            path: final_path.clone(),
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
    /// bytes are on disk, but no reader sees the file yet. Errors name the
    /// final path, the file the user knows; the temporary one is removed.
    pub fn seal(self, writer: HashingWriter) -> Result<SealedFile, FileError> {
        let HashingWriter {
            inner,
            hasher,
            bytes,
            path: _,
        } = writer;
        let file = inner
            .into_inner()
            .map_err(|e| FileError::new("write", &self.final_path, e.into_error()))?;
        file.sync_all()
            .map_err(|source| FileError::new("sync", &self.final_path, source))?;
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
    pub fn finish(self, writer: HashingWriter) -> Result<FinishedFile, FileError> {
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
    pub fn publish(self) -> Result<FinishedFile, FileError> {
        let path = &self.finished.path;
        fs::rename(&self.temp_path, path)
            .map_err(|source| FileError::new("rename into place", path, source))?;
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
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    let failed = |source| FileError::new("create directory", dir, source);
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
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| FileError::new("sync directory", dir, source))
}

impl FinishedFile {
    /// The size and SHA-256 of a file already in place.
    pub fn of(path: &Path) -> io::Result<FinishedFile> {
        let mut file = File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut bytes = 0;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(FinishedFile {
            path: path.to_owned(),
            bytes,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

/// Whether the file at `path` holds exactly `bytes` bytes whose SHA-256 is
/// `sha256` (hex): the check that a staged file was renamed into place whole.
pub fn is_whole(path: &Path, bytes: Option<i64>, sha256: Option<&str>) -> bool {
    let (Some(bytes), Some(sha256)) = (bytes, sha256) else {
        return false;
    };
    let Ok(mut file) = fs::File::open(path) else {
        return false;
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0i64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as i64;
            }
            Err(_) => return false,
        }
    }
    total == bytes && hex::encode(hasher.finalize()) == sha256
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The message as `main` prints it: the error and its sources.
    fn chain(error: FileError) -> String {
        format!("{:#}", anyhow::Error::new(error))
    }

    #[test]
    fn a_full_device_quota_or_size_limit_is_said_in_words_with_the_os_error_once() {
        let path = Path::new("out/generations/date=2026-01-02/part-r-0-00001.parquet");
        let failed = |code| {
            chain(FileError::new(
                "write",
                path,
                io::Error::from_raw_os_error(code),
            ))
        };
        let file = "failed to write `out/generations/date=2026-01-02/part-r-0-00001.parquet`";
        assert_eq!(
            failed(libc::ENOSPC),
            format!("{file}: no space left on the device holding it (os error 28)")
        );
        assert_eq!(
            failed(libc::EDQUOT),
            format!(
                "{file}: the disk quota on the device holding it is used up (os error {})",
                libc::EDQUOT
            )
        );
        assert_eq!(
            failed(libc::EFBIG),
            format!(
                "{file}: it would grow past the largest file size allowed here, by the file system or by `ulimit -f` (os error 27)"
            )
        );
    }

    #[test]
    fn other_errors_follow_the_path_as_the_source() {
        let error = FileError::new(
            "create",
            Path::new("out/_manifests/.r-0.json.tmp"),
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(
            chain(error),
            "failed to create `out/_manifests/.r-0.json.tmp`: Permission denied (os error 13)"
        );
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
