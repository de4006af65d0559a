//! genledger exports OpenRouter generation metadata (cost, tokens, model,
//! provider, latency) to Parquet or CSV files a warehouse loads as they are.
//!
//! # Data flow
//!
//! ```text
//! source ──▶ dispatcher ──▶ fetch tasks ──▶ sink thread ──▶ ledger commit ──▶ files + manifest
//!   │            │              │               │
//!   │            │              │               └─ sink/: partitioned Parquet/CSV, temp name → staged → renamed → committed
//!   │            │              └─ client/: one GET per ID (and its content, if on), retry rules; limiter: pacing, 429 pause, AIMD rate
//!   │            └─ export: bounded fan-out, stop on 401/402 or a signal
//!   └─ source: lines → IDs (plain or JSONL), invalid lines recorded; the ledger says which are new
//! ```
//!
//! - [`config`]: figment layers (defaults < TOML < `GENLEDGER_*` < flags) resolved into `Settings`.
//! - [`record`] and [`schema`]: the typed record and the one definition of the output columns.
//! - [`money`]: exact decimal amounts, parsed from the JSON number text.
//! - [`ledger`]: the SQLite state ledger, the file commit protocol and start-up reconciliation.
//! - [`manifest`]: the per-run manifest, written last.
//! - [`simulator`]: an OpenRouter stand-in with fault knobs, used by `demo`, `bench` and the tests.
//! - [`ddl`]: `genledger schema`, each warehouse's table definitions generated from [`schema`].
//! - [`report`]: `genledger report`, cost and tokens by model and day read back from the files.
//! - [`app`]: the commands; `main.rs` only parses, sets up logging and maps the exit code.

pub mod app;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod ddl;
pub mod demo;
pub mod export;
pub mod ledger;
pub mod limiter;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod money;
pub mod progress;
pub mod queue;
pub mod record;
pub mod report;
pub mod schema;
pub mod shard;
pub mod simulator;
pub mod sink;
pub mod source;
pub mod stop;
pub mod summary;
