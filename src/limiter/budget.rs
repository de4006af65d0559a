//! The budget a server announces in `X-RateLimit-*` headers: what is left of
//! it net of requests on the wire, when sending must hold, and when one
//! request may ask whether a held budget is back early.

use std::time::Duration;

use tokio::time::Instant;

use super::{Allowance, State, Ticket};

/// A reset announced in whole seconds may lie up to this long after the
/// budget is really back...
pub(super) const ROUNDING: Duration = Duration::from_secs(1);
/// ... so this many request spacings into such a hold (and no sooner than a
/// second before the reset), one request at a time asks whether it is. At
/// the limit a log frees a slot about every spacing; two were measured too
/// few after a burst at start-up.
pub(super) const PROBE_SPACINGS: f64 = 4.0;
/// After this many probes refused in a row the server is taken to reset
/// whole windows on the second it names (a fixed window refuses every
/// probe): no more are sent.
pub(super) const REFUSED_PROBES: u32 = 2;
/// Send times kept to find a budget's oldest counted request (a budget
/// larger than this is probed by the spacing rule alone).
pub(super) const SEND_LOG: usize = 4096;

/// The budget as last announced, net of requests sent since.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// Requests left after every request sent up to `sent_at` is counted.
    pub(super) left: i64,
    /// The send counter when `left` was computed.
    pub(super) sent_at: u64,
    /// The ticket whose answer announced it; older answers are staler.
    pub(super) from: u64,
    /// That ticket's epoch: a budget announced for a request sent before the
    /// last signal does not signal again.
    pub(super) epoch: u64,
    pub(super) reset: Instant,
    pub(super) reset_rounded: bool,
    /// `X-RateLimit-Limit`, if sent.
    pub(super) size: Option<u64>,
    /// When sending first held on it.
    pub(super) held_since: Option<Instant>,
    /// Announced to a probe: the hold it continues has signalled already.
    pub(super) from_probe: bool,
}

impl State {
    /// Takes in a budget an answer announced, unless a later-sent request's
    /// answer already spoke for the same window.
    pub(super) fn note_budget(&mut self, ticket: Ticket, allowance: Allowance, now: Instant) {
        let reset = allowance.reset.unwrap_or(now + Duration::from_secs(1));
        let newer_window = self.budget.is_none_or(|b| reset > b.reset);
        let fresher = self.budget.is_none_or(|b| ticket.number >= b.from);
        if !(newer_window || fresher) {
            return;
        }
        // Requests sent after this one may not have been counted yet.
        let unseen = self.sent.saturating_sub(ticket.number);
        let left = allowance.remaining as i64 - unseen as i64;
        self.budget = Some(Budget {
            left,
            sent_at: self.sent,
            from: ticket.number,
            epoch: ticket.epoch,
            reset,
            reset_rounded: allowance.reset.is_some() && allowance.reset_rounded,
            size: allowance.limit,
            held_since: None,
            from_probe: ticket.probe,
        });
    }

    /// The reset to wait for when the budget is spent. (For a sliding
    /// window or a bucket the budget comes back before that, but the reset
    /// is all a server says; waiting for it never earns a 429. Only a
    /// reset in whole seconds is asked about sooner: see `probe_at`.)
    pub(super) fn budget_hold(&mut self, now: Instant) -> Option<Instant> {
        let sent = self.sent;
        let budget = self.budget.as_mut()?;
        if budget.reset <= now {
            self.budget = None;
            self.probing = false;
            return None;
        }
        let left = budget.left - sent.saturating_sub(budget.sent_at) as i64;
        if left > 0 {
            return None;
        }
        budget.held_since.get_or_insert(now);
        Some(budget.reset)
    }

    /// When one request may ask whether a held budget is back: only when
    /// its reset came rounded up to a whole second (a sliding log is back
    /// when its oldest request leaves, often long before), [`PROBE_SPACINGS`]
    /// into the hold, and one probe at a time. A fixed window refuses it
    /// with a 429 that pauses until the same reset.
    ///
    /// Never before the oldest request the budget can still count is a
    /// second old (and one spacing more, for its way to the server): a
    /// reset in whole seconds speaks of a window of a second or more, so no
    /// slot frees sooner. A budget spent within its first second (the
    /// burst at start-up) is otherwise probed too early, and refused.
    pub(super) fn probe_at(&self) -> Option<Instant> {
        if self.probing || self.probes_refused >= REFUSED_PROBES {
            return None;
        }
        let budget = self.budget.filter(|b| b.reset_rounded)?;
        let rate = self.control.rate();
        let spacing = Duration::from_secs_f64(PROBE_SPACINGS / rate);
        let earliest = budget.held_since? + spacing;
        let oldest = budget
            .size
            .and_then(|size| self.sends.len().checked_sub(usize::try_from(size).ok()?))
            .map(|i| self.sends[i] + ROUNDING + Duration::from_secs_f64(1.0 / rate));
        let after_reset = budget.reset.checked_sub(ROUNDING).unwrap_or(earliest);
        Some(earliest.max(after_reset).max(oldest.unwrap_or(earliest)))
    }

    /// Notes a request sent at `now`.
    pub(super) fn note_sent(&mut self, now: Instant) {
        self.sent += 1;
        if self.sends.len() == SEND_LOG {
            self.sends.pop_front();
        }
        self.sends.push_back(now);
    }
}
