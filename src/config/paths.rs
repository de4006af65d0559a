//! What the paths of the configuration must be before a run creates
//! anything: the config file a regular file, `output.dir` a directory (or
//! creatable as one), `state.path` a file (or creatable as one). Each problem
//! is said as what the path is: `/dev/null` is a character device, not
//! missing.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::layout;

/// What is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathKind {
    Directory,
    File,
    /// A device, pipe or socket, named for messages.
    Special(&'static str),
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathKind::Directory => f.write_str("a directory"),
            PathKind::File => f.write_str("a file"),
            PathKind::Special(kind) => f.write_str(kind),
        }
    }
}

/// What `path` is (following links), or `None` when nothing is there or it
/// cannot be looked at.
pub(super) fn kind_of(path: &Path) -> Option<PathKind> {
    let file_type = std::fs::metadata(path).ok()?.file_type();
    if file_type.is_dir() {
        return Some(PathKind::Directory);
    }
    if file_type.is_file() {
        return Some(PathKind::File);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let special = [
            (file_type.is_char_device(), "a character device"),
            (file_type.is_block_device(), "a block device"),
            (file_type.is_fifo(), "a named pipe"),
            (file_type.is_socket(), "a socket"),
        ];
        if let Some((_, name)) = special.into_iter().find(|(is, _)| *is) {
            return Some(PathKind::Special(name));
        }
    }
    Some(PathKind::Special("neither a file nor a directory"))
}

/// Why `dir` cannot be used or created as a directory, if it cannot.
pub(super) fn dir_problem(dir: &Path) -> Option<String> {
    match kind_of(dir) {
        Some(PathKind::Directory) => None,
        Some(kind) => Some(format!("is {kind}, not a directory")),
        None => blocked_by(dir),
    }
}

/// Why the ledger `file` cannot be opened or created as a file, if it cannot.
pub(super) fn file_problem(file: &Path) -> Option<String> {
    match kind_of(file) {
        Some(PathKind::File) => None,
        // A directory already named like the ledger is in the way; any other
        // was most likely meant to hold it.
        Some(PathKind::Directory) if file.ends_with(layout::LEDGER_FILE) => {
            Some("is a directory, not a file".into())
        }
        Some(PathKind::Directory) => Some(format!(
            "is a directory, not a file; name a file in it, e.g. `{}`",
            file.join(layout::LEDGER_FILE).display()
        )),
        Some(kind) => Some(format!("is {kind}, not a file")),
        None => blocked_by(file),
    }
}

/// The nearest existing ancestor of a path not yet there must be a directory
/// for the path to be created.
fn blocked_by(path: &Path) -> Option<String> {
    let (ancestor, kind) = path
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .find_map(|a| kind_of(a).map(|kind| (PathBuf::from(a), kind)))?;
    (kind != PathKind::Directory).then(|| {
        format!(
            "cannot be created: `{}` is {kind}, not a directory",
            ancestor.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_is_named_for_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(dir_problem(dir.path()), None);
        assert_eq!(dir_problem(&dir.path().join("new/deeper")), None);
        assert_eq!(
            dir_problem(&file).as_deref(),
            Some("is a file, not a directory")
        );
        let under_file = dir_problem(&file.join("out")).unwrap();
        assert!(
            under_file.starts_with("cannot be created: `")
                && under_file.ends_with("` is a file, not a directory"),
            "{under_file}"
        );
        assert_eq!(file_problem(&file), None);
        assert_eq!(file_problem(&dir.path().join("new.db")), None);
        let in_dir = file_problem(dir.path()).unwrap();
        assert!(
            in_dir.starts_with("is a directory, not a file; name a file in it"),
            "{in_dir}"
        );
        #[cfg(unix)]
        assert_eq!(
            file_problem(Path::new("/dev/null")).as_deref(),
            Some("is a character device, not a file")
        );
    }
}
