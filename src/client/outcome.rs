//! How one ID's fetch ends: a record, a failure or pending.

use crate::record::{Generation, Reason};

/// Why one ID ended unexported.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub message: String,
    /// When the first 404 for the ID came, if one did (kept across runs).
    pub first_404: Option<std::time::SystemTime>,
}

/// The end of one ID's fetch: `T` is the metadata record, or its content.
#[derive(Debug)]
pub enum Fetched<T = Box<Generation>> {
    Record(T),
    /// Will not succeed by retrying.
    Failed(Failure),
    /// Not done; a later run tries again.
    Pending(Failure),
}
