//! `genledger state`: the ledger looked after from outside a run.
//! [`rebuild`] recreates a lost or emptied ledger from what the output
//! directory holds: its manifests and the committed files they list;
//! [`check`] checks a ledger against its own rules and the output.

pub mod check;
mod deep;
mod read;
pub mod rebuild;
