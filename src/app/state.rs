//! `genledger state …`: the ledger looked after from outside a run.

use std::path::Path;

use super::load_settings;
use crate::cli::StateCommand;
use crate::exit::ExitStatus;
use crate::state::rebuild;

pub fn run(file: Option<&Path>, command: StateCommand) -> anyhow::Result<ExitStatus> {
    match command {
        StateCommand::Rebuild(args) => {
            let settings = load_settings(file, &args.flags)?;
            let done = rebuild::rebuild(&settings)?;
            println!(
                "ledger `{}` rebuilt from `{}`: {} runs, {} files, {} IDs exported, {} contents exported, {} IDs failed",
                settings.state_path.display(),
                settings.output.dir.display(),
                done.runs,
                done.files,
                done.ids_exported,
                done.contents_exported,
                done.ids_failed
            );
            if done.adopted > 0 {
                println!(
                    "  {} data files no manifest listed were adopted and listed in a new manifest",
                    done.adopted
                );
            }
            if let Some(aside) = &done.set_aside {
                println!(
                    "  the ledger that was there is kept as `{}`",
                    aside.display()
                );
            }
            if done.damaged.is_empty() {
                return Ok(ExitStatus::Success);
            }
            eprintln!(
                "error: {} listed files are missing or not whole; their IDs will be exported again:",
                done.damaged.len()
            );
            for path in &done.damaged {
                eprintln!("  {}", path.display());
            }
            Ok(ExitStatus::Partial)
        }
    }
}
