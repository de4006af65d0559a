//! `genledger schema`: the output tables' definitions for a warehouse.

use std::path::Path;

use anyhow::Context;

use crate::cli::{RunFlags, SchemaArgs};
use crate::config;
use crate::ddl::{self, Table};
use crate::exit::ExitStatus;

/// Prints the definitions on stdout; money as the configuration writes it
/// unless `--money` says otherwise.
pub fn run(config_file: Option<&Path>, args: &SchemaArgs) -> anyhow::Result<ExitStatus> {
    let money = match args.money {
        Some(money) => money,
        None => {
            let layered = config::load(config_file, RunFlags::default())
                .context("failed to read `output.money` from the configuration")?;
            layered.raw.output.money
        }
    };
    let tables = match args.table {
        Some(table) => vec![table],
        None => vec![Table::Generations, Table::Content, Table::Focus],
    };
    print!("{}", ddl::render(args.dialect, money, &tables));
    Ok(ExitStatus::Success)
}
