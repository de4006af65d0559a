//! Integration tests, one binary: the exporter against the embedded simulator on
//! loopback, and the `genledger` executable as a user runs it.

mod architecture;
mod check;
mod cli;
mod content;
mod crash;
mod daemon;
mod ddl;
mod deploy;
#[cfg(unix)]
mod disk;
mod faults;
mod focus;
mod limits;
mod network;
mod objstore;
mod partition;
mod reconcile;
mod report;
mod retention;
mod roundtrip;
mod state;
mod support;
