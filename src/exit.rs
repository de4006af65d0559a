//! The process exit status, one list for every command. Scripts, systemd's
//! `Restart=` rules and Kubernetes Job policies branch on these numbers, so
//! they never change meaning.

/// How a command ended, as the process exit code says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for is done.
    #[default]
    Success,
    /// The run finished, but some IDs failed or are still pending.
    Partial,
    /// A usage, configuration, input, output or state error.
    Error,
    /// The API refused the run (401 key, 402 credits); nothing more was sent.
    Refused,
    /// Another process holds the state lock.
    Locked,
    /// The network cannot reach the API until this machine's setup changes
    /// (an untrusted certificate, a proxy, a name that does not exist);
    /// nothing more was sent.
    Unreachable,
    /// Interrupted by a signal; committed work is intact.
    Interrupted,
}

impl ExitStatus {
    pub const fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Partial => 1,
            ExitStatus::Error => 2,
            ExitStatus::Refused => 3,
            ExitStatus::Locked => 4,
            ExitStatus::Unreachable => 5,
            ExitStatus::Interrupted => 130,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}
