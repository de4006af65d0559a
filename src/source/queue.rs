//! Queue files in daemon mode: each tick reads from the committed byte offset
//! to the last complete line. The files stay open between ticks, so when one is
//! rotated (renamed away and replaced) its last lines are still read from the
//! old inode before the new file is read from its start.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::SourceError;
use crate::ledger::{Ledger, QueueOffset};

/// The daemon's queue files, in configuration order.
pub struct QueueFiles {
    files: Vec<QueueFile>,
}

struct QueueFile {
    path: PathBuf,
    /// The ledger's key for this file: its path as configured.
    key: String,
    /// The file as last opened, kept to finish it if it is rotated away.
    held: Option<Held>,
}

struct Held {
    file: File,
    inode: u64,
}

/// A stretch of a queue file to read in this tick.
pub struct Segment {
    pub file: File,
    /// Where to start; its `offset` and `lines` advance as lines are taken.
    pub start: QueueOffset,
    /// The file was rotated away and will not grow: its last line counts even
    /// without a line ending.
    pub finished: bool,
    pub name: String,
}

impl QueueFiles {
    pub fn new(paths: Vec<PathBuf>) -> QueueFiles {
        let files = paths
            .into_iter()
            .map(|path| QueueFile {
                key: path.display().to_string(),
                path,
                held: None,
            })
            .collect();
        QueueFiles { files }
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// What to read of file `index` now: the rest of a rotated-away file if
    /// this process still holds it, then the current file from the saved
    /// offset (or from 0 when it is a different file or shorter than the
    /// offset: rotated or truncated).
    pub fn segments(&mut self, index: usize, ledger: &Ledger) -> Result<Vec<Segment>, SourceError> {
        let queue = &mut self.files[index];
        let stored = ledger.queue_offset(&queue.key)?;
        let name = queue.path.display().to_string();
        let open_error = |source| SourceError::Open {
            path: name.clone(),
            source,
        };
        let current = match File::open(&queue.path) {
            Ok(file) => {
                let meta = file.metadata().map_err(open_error)?;
                Some((file, inode(&meta), meta.len()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(open_error(e)),
        };
        let mut segments = Vec::new();
        if let (Some(held), Some(saved)) = (&queue.held, &stored) {
            let replaced = current
                .as_ref()
                .is_none_or(|(_, ino, _)| *ino != saved.inode);
            if held.inode == saved.inode && replaced {
                tracing::info!(queue = %name, "queue file was rotated; finishing the old file first");
                segments.push(Segment {
                    file: held.file.try_clone().map_err(open_error)?,
                    start: saved.clone(),
                    finished: true,
                    name: name.clone(),
                });
                queue.held = None;
            }
        }
        let Some((file, inode, len)) = current else {
            return Ok(segments);
        };
        let from_start = QueueOffset {
            path: queue.key.clone(),
            inode,
            offset: 0,
            lines: 0,
        };
        let start = resume_from(stored, from_start, len, &name);
        let keep = file.try_clone().map_err(open_error)?;
        queue.held = Some(Held { file: keep, inode });
        segments.push(Segment {
            file,
            start,
            finished: false,
            name,
        });
        Ok(segments)
    }
}

/// Where to read the current file from: the saved offset when it is the
/// same file and still that long, else from the start.
fn resume_from(
    stored: Option<QueueOffset>,
    from_start: QueueOffset,
    len: u64,
    name: &str,
) -> QueueOffset {
    match stored {
        Some(saved) if saved.inode == from_start.inode && len >= saved.offset => saved,
        Some(saved) if saved.inode == from_start.inode => {
            tracing::warn!(queue = %name, offset = saved.offset, size = len, "queue file is shorter than the saved offset (truncated); reading it from the start");
            from_start
        }
        Some(_) => {
            tracing::info!(queue = %name, "queue file is a new file (rotated); reading it from the start");
            from_start
        }
        None => from_start,
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}
