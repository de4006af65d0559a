//! genledger exports OpenRouter generation metadata (cost, tokens, model,
//! provider, latency) to Parquet or CSV files a warehouse loads as they are.
//!
//! # Data flow
//!
//! ```text
//! source ──▶ dispatcher ──▶ fetch tasks ──▶ sink thread ──▶ ledger commit ──▶ files + manifest
//!   │            │              │               │
//!   │            │              │               └─ sink/: partitioned Parquet/CSV, temp name → staged → renamed → committed
//!   │            │              └─ client/: one GET per ID (and its content, if on), retry rules; limiter: pacing, 429 pause, learned rate
//!   │            └─ export: bounded fan-out, stop on 401/402, a network that cannot heal, or a signal
//!   └─ source: lines → IDs (plain or JSONL), invalid lines recorded; the ledger says which are new
//! ```
//!
//! The layers, which modules own which policy, and the invariants are in
//! `ARCHITECTURE.md` at the top of the repository; `tests/it/architecture.rs`
//! checks that imports point only downward.

// L0: leaves, importing nothing of the crate.
pub mod atomic_file;
pub mod exit;
pub mod layout;
pub mod limiter;
pub mod money;
pub mod objstore;
pub mod progress;
pub mod shard;
pub mod simulator;
pub mod stop;
pub mod timestamp;
// L1: the record model.
pub mod record;
pub mod schema;
// L2: configuration.
pub mod config;
// L3: the adapters (sink and source may use the ledger).
pub mod client;
pub mod ledger;
pub mod sink;
pub mod source;
// L4: the pipeline and the readers of its output.
pub mod ddl;
pub mod export;
pub mod reconcile;
pub mod report;
// L5: the ledger looked after from outside a run.
pub mod state;
// L6: the edge.
pub mod app;
pub mod cli;
pub mod logging;
