//! `genledger state`: the ledger looked after from outside a run.
//! [`rebuild`] recreates a lost or emptied ledger from what the output
//! directory holds: its manifests and the committed files they list.

mod read;
pub mod rebuild;
