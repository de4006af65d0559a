//! `genledger schema`: the output tables' definitions for a warehouse.

use std::path::Path;

use anyhow::Context;

use crate::cli::{RunFlags, SchemaArgs};
use crate::config;
use crate::ddl::{self, Table};
use crate::exit::ExitStatus;
use crate::objstore::{self, Location};

/// Prints the definitions on stdout; money as the configuration writes it
/// unless `--money` says otherwise.
pub fn run(config_file: Option<&Path>, args: &SchemaArgs) -> anyhow::Result<ExitStatus> {
    let raw = config::load(config_file, RunFlags::default())
        .context("failed to read `output` from the configuration")?
        .raw;
    let money = args.money.unwrap_or(raw.output.money);
    let tables = match args.table {
        Some(table) => vec![table],
        None => vec![Table::Generations, Table::Content, Table::Focus],
    };
    let output = match &args.output {
        Some(url) => url.clone(),
        None => raw.output.dir.to_string_lossy().into_owned(),
    };
    let location = objstore::parse_location(&output)
        .map_err(|message| anyhow::anyhow!("`--output`/`output.dir`: {message}"))?;
    if let Location::Remote(url) = &location {
        let external = ddl::External {
            url,
            extension: raw.output.format.extension(),
            money,
        };
        if let Some(text) = ddl::render_external(args.dialect, &external, &tables) {
            print!("{text}");
            return Ok(ExitStatus::Success);
        }
    }
    print!("{}", ddl::render(args.dialect, money, &tables));
    Ok(ExitStatus::Success)
}
