//! Progress reporting: a small trait, with a terminal bar (indicatif, hidden
//! when stderr is not a terminal) and a silent implementation.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A point-in-time view of a run, for progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub done: u64,
    pub exported: u64,
    pub failed: u64,
    pub pending: u64,
    /// Contents exported and failed (both 0 unless content export is on).
    pub content_exported: u64,
    pub content_failed: u64,
    pub requests: u64,
    pub rate_limited: u64,
    pub rate: f64,
}

pub trait Progress: Send + Sync {
    /// Called a few times a second while the run goes on.
    fn update(&self, snapshot: &Snapshot);
    /// Called once when the run ends, before the summary prints.
    fn finish(&self);
}

/// Shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn update(&self, _: &Snapshot) {}
    fn finish(&self) {}
}

/// A live bar on stderr.
pub struct TerminalProgress {
    bar: ProgressBar,
}

impl TerminalProgress {
    /// `total` is the number of IDs when known in advance (the demo), else a spinner.
    pub fn new(total: Option<u64>) -> TerminalProgress {
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = if total.is_some() {
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}) {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {pos} IDs done ({per_sec}) {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        TerminalProgress { bar }
    }
}

impl Progress for TerminalProgress {
    fn update(&self, s: &Snapshot) {
        self.bar.set_position(s.done);
        self.bar.set_message(message(s));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The bar's text; content counts appear once there are any.
fn message(s: &Snapshot) -> String {
    let content = if s.content_exported + s.content_failed > 0 {
        format!(
            " · content {} exported, {} failed",
            s.content_exported, s.content_failed
        )
    } else {
        String::new()
    };
    format!(
        "exported {} · failed {} · pending {}{content} · requests {} · 429s {} · rate {:.0}/s",
        s.exported, s.failed, s.pending, s.requests, s.rate_limited, s.rate
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shows_content_only_when_there_is_some() {
        let mut s = Snapshot {
            exported: 7,
            failed: 1,
            pending: 2,
            requests: 12,
            rate_limited: 3,
            rate: 49.6,
            ..Snapshot::default()
        };
        assert_eq!(
            message(&s),
            "exported 7 · failed 1 · pending 2 · requests 12 · 429s 3 · rate 50/s"
        );
        s.content_exported = 5;
        s.content_failed = 2;
        assert_eq!(
            message(&s),
            "exported 7 · failed 1 · pending 2 · content 5 exported, 2 failed · requests 12 · 429s 3 · rate 50/s"
        );
    }
}
