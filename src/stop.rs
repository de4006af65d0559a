//! The run-wide stop signal: set by a refused key (401/402) or an interrupt, seen
//! by every worker, which then stops sending and lets in-flight answers land.

use std::sync::Mutex;

use tokio::sync::watch;

/// Why the run stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The API refused the key (401) or the credits (402).
    Refused { status: u16, message: String },
    /// SIGINT or SIGTERM.
    Interrupted,
    /// Reading input or writing output failed; the run ends with an error.
    OutputFailed,
}

/// Shared by the dispatcher and every fetch worker.
pub struct Stop {
    reason: Mutex<Option<StopReason>>,
    flag: watch::Sender<bool>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            reason: Mutex::new(None),
            flag: watch::Sender::new(false),
        }
    }
}

impl Stop {
    /// Stops the run; the first reason given is the one reported.
    pub fn trigger(&self, reason: StopReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.flag.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.flag.borrow()
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves once the run is stopped.
    pub async fn stopped(&self) {
        let mut rx = self.flag.subscribe();
        // The sender lives in `self`, so `wait_for` cannot see it dropped.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
