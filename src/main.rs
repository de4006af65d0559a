//! The `genledger` binary: parse the command line, set up logging, run, exit.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = genledger::cli::Cli::parse();
    // A daemon's log is its only report: one line per tick by default.
    let is_daemon = matches!(cli.command, genledger::cli::Command::Daemon(_));
    let verbose = if is_daemon {
        cli.verbose.max(1)
    } else {
        cli.verbose
    };
    genledger::logging::init(verbose, cli.quiet, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(genledger::app::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(genledger::app::exit_code_for(&error))
        }
    }
}
