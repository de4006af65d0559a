//! The inputs a run reads IDs from.

use std::path::PathBuf;

/// One input, a file or stdin (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(arg))
        }
    }

    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "stdin".into(),
            Input::File(path) => path.display().to_string(),
        }
    }
}
