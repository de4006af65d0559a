//! The command line (clap derive): every command's arguments. Flags say how
//! this process runs; [`RunFlags`] is the configuration's top layer, each flag
//! mapped to its configuration key once, in its `Provider` impl.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use crate::config::Format;
use crate::ddl::{Dialect, Table};
use crate::report::ReportFormat;
use crate::schema::MoneyMode;
use crate::shard::Shard;
use crate::simulator::SimConfig;

/// Where the key comes from and what each exit code means, under `--help` of
/// the program and of the commands that call the API. The codes are those of
/// `exit::ExitStatus`; a test checks that every one is listed.
const AFTER_HELP: &str = "\
API key:
  OPENROUTER_API_KEY, or the file named by `api.key_file` in the configuration
  (a mounted secret); the variable wins when both are set. It is never printed.

Configuration:
  built-in defaults < TOML file (--config or GENLEDGER_CONFIG)
  < GENLEDGER_<SECTION>__<KEY> variables < flags; `show-config` prints the result.

Exit codes:
  0    every ID was exported
  1    the run finished, but some IDs failed or are still pending (see the failures file)
  2    usage, configuration, input, output or state error; committed files stay committed
  3    the API refused the key (401) or the credits (402); the rest is pending
  4    another genledger process holds the state (its PID is in the message)
  5    a network fault retrying cannot heal (untrusted certificate, proxy, unknown
       host name); nothing more was sent, the rest is pending
  130  interrupted (SIGINT/SIGTERM); files written so far are complete";

/// The heading of the flags every command takes, apart from the command's own.
const GLOBAL: &str = "Global options";

#[derive(Debug, Parser)]
#[command(
    name = "genledger",
    version,
    about = "Exports OpenRouter generation costs and usage to Parquet or CSV",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Configuration file (TOML); default from GENLEDGER_CONFIG.
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = GLOBAL)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export the IDs of the inputs once, print a summary, exit with a status code.
    #[command(after_help = AFTER_HELP)]
    Export(ExportArgs),
    /// Run `schedule.cron`: each tick exports what is new in the queue files (and stdin).
    #[command(after_help = AFTER_HELP)]
    Daemon(DaemonArgs),
    /// Run the embedded OpenRouter simulator as a server.
    Simulate(Box<SimulateArgs>),
    /// Start the simulator, export a few thousand IDs to ./genledger-demo/, show the result.
    Demo(DemoArgs),
    /// Measure throughput, rate-limit behaviour and memory against the simulator.
    Bench(BenchArgs),
    /// Validate the layered configuration.
    #[command(after_help = AFTER_HELP)]
    CheckConfig(ConfigArgs),
    /// Print the resolved configuration, secrets masked.
    ShowConfig(ConfigArgs),
    /// Print the output tables' definitions for a warehouse (DuckDB, BigQuery, ...).
    Schema(SchemaArgs),
    /// Cost and tokens by model and by day from an export directory (and a chart).
    Report(ReportArgs),
    /// Look after the state ledger.
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Recreate a lost or emptied ledger from the output directory's manifests
    /// and committed files (a ledger already there is kept beside it, renamed).
    Rebuild(ConfigArgs),
    /// What the ledger holds: IDs by status and by day, files, runs, size.
    Info(StateArgs),
    /// Apply `state.retention` now and rewrite every day compactly.
    Prune(PruneArgs),
    /// Check the ledger against SQLite's integrity check, its own rules and
    /// the output (committed files whole, manifests there); exit 1 on a problem.
    Check(CheckArgs),
    /// Print a run's failures file (CSV), written again from the ledger; a
    /// run that was killed included.
    Failures(FailuresArgs),
}

/// Where the state is, resolved as `export` resolves it (`--config`,
/// `state.path`, `--output`), and how to print what is found.
#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(flatten)]
    pub flags: StateFlags,
    /// Human-readable text, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

/// The flags that say where a state is, resolved as `export` resolves them
/// (with `--config`, `GENLEDGER_*` and `state.path`). Not all of
/// [`RunFlags`]: its `--format` (the output's) would clash with the
/// commands' own `--format` (text or JSON).
#[derive(Debug, Clone, Default, Args)]
pub struct StateFlags {
    /// Output directory (its `_state/` holds the ledger by default). Overrides `output.dir`.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The shard whose ledger to use (each shard has its own).
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<Shard>,
}

impl StateFlags {
    /// As the configuration's top layer.
    pub fn run_flags(&self) -> RunFlags {
        RunFlags {
            output: self.output.clone(),
            shard: self.shard,
            ..RunFlags::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Say what would go, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Also read every committed data file's IDs: each must be in one file
    /// only, and exported in the ledger (slow: reads the whole output).
    #[arg(long)]
    pub deep: bool,
}

#[derive(Debug, Args)]
pub struct FailuresArgs {
    /// The run's ID, as in its manifest's and files' names (`20261121T213000Z-3fa9`).
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    #[command(flatten)]
    pub flags: StateFlags,
}

/// Flags that override configuration keys.
#[derive(Debug, Clone, Default, Args)]
pub struct RunFlags {
    /// Input file of IDs, `-` for stdin; repeatable. Overrides `input.paths`.
    #[arg(long = "input", short = 'i', value_name = "PATH")]
    pub inputs: Vec<String>,
    /// Output directory. Overrides `output.dir`.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Output format. Overrides `output.format`.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// API base URL. Overrides `api.base_url`.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Highest request rate per second. Overrides `fetch.requests_per_second`.
    #[arg(long, value_name = "N")]
    pub rps: Option<f64>,
    /// Requests in flight at once. Overrides `fetch.concurrency`.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Keep only the IDs of shard INDEX of COUNT (`/COUNT` takes INDEX from
    /// JOB_COMPLETION_INDEX); paces at the rate / COUNT, with its own ledger.
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<Shard>,
    /// Also export stored prompts and completions (sensitive). Overrides `export.content`.
    #[arg(long)]
    pub with_content: bool,
}

/// The flags' layer of the configuration: only flags given on the command
/// line override their key.
impl Provider for RunFlags {
    fn metadata(&self) -> Metadata {
        Metadata::named("command-line flags")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        let mut set = |key: &str, value: Value| {
            let (section, key) = key.split_once('.').unwrap_or(("", key));
            let entry = root
                .entry(section.to_owned())
                .or_insert_with(|| Dict::new().into());
            if let Value::Dict(_, dict) = entry {
                dict.insert(key.to_owned(), value);
            }
        };
        if !self.inputs.is_empty() {
            set("input.paths", Value::serialize(&self.inputs)?);
        }
        if let Some(dir) = &self.output {
            set("output.dir", Value::serialize(dir)?);
        }
        if let Some(format) = self.format {
            set("output.format", Value::serialize(format)?);
        }
        if let Some(url) = &self.base_url {
            set("api.base_url", Value::serialize(url)?);
        }
        if let Some(rps) = self.rps {
            set("fetch.requests_per_second", Value::serialize(rps)?);
        }
        if let Some(concurrency) = self.concurrency {
            set("fetch.concurrency", Value::serialize(concurrency)?);
        }
        if self.with_content {
            set("export.content", Value::serialize(true)?);
        }
        Ok(Profile::Default.collect(root))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    /// Summary on stdout as text or JSON.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub summary: SummaryFormat,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Fetch again the IDs earlier runs recorded as failed.
    #[arg(long)]
    pub retry_failed: bool,
    /// Fetch IDs dated before `state.retention` too (a backfill): the ledger
    /// no longer knows whether they were exported.
    #[arg(long)]
    pub include_old: bool,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub flags: RunFlags,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub flags: RunFlags,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub sim: SimConfig,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many generation IDs to export.
    #[arg(long, default_value_t = 3000)]
    pub ids: u64,
    /// Where the demo writes its files.
    #[arg(long, default_value = "genledger-demo")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// IDs in the throughput and memory run.
    #[arg(long, default_value_t = 1_000_000)]
    pub ids: u64,
    /// Requests per second the simulator enforces in the rate table (R).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds each rate-table run lasts at R (it exports rate × this many IDs).
    #[arg(long, default_value_t = 60)]
    pub rate_secs: u64,
    /// Skip the throughput and memory runs.
    #[arg(long)]
    pub skip_throughput: bool,
    /// Skip the rate table (about 30 minutes at the defaults).
    #[arg(long)]
    pub skip_rates: bool,
    /// IDs in each 90-day run (one in time order, one cycling through the days).
    #[arg(long, default_value_t = 1_000_000)]
    pub cycle_ids: u64,
    /// Skip the 90-day runs.
    #[arg(long)]
    pub skip_cycle: bool,
    /// IDs in the content run, each with a 200 KiB stored prompt.
    #[arg(long, default_value_t = 20_000)]
    pub content_ids: u64,
    /// Skip the content run.
    #[arg(long)]
    pub skip_content: bool,
    /// Working directory for IDs and output (removed afterwards).
    #[arg(long, default_value = "genledger-bench")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Dialect to print the table definitions in.
    #[arg(long, value_enum)]
    pub dialect: Dialect,
    /// Money columns as exact decimals or doubles, to match files written with
    /// that `output.money`; default from the configuration (`decimal`).
    #[arg(long, value_enum)]
    pub money: Option<MoneyMode>,
    /// Only this table (default: all). With `--dialect bigquery` this prints
    /// one bare JSON schema, as `bq mk --schema` takes it.
    #[arg(long, value_enum)]
    pub table: Option<Table>,
    /// The output to read in place (default `output.dir`). For a bucket
    /// (`s3://`, `gs://`, `az://`), `bigquery`, `snowflake` and `duckdb` print
    /// the statements that read the files where they are: a BigQuery external
    /// table, a Snowflake stage and `COPY INTO`, a DuckDB view.
    #[arg(long, value_name = "URL")]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Export directory (the `output.dir` of a run, holding `generations/`).
    pub dir: PathBuf,
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Also write a chart of daily cost by model to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_line_is_well_formed() {
        // Clap checks names, conflicts and types only when asked: two flags
        // of one name in a command would otherwise fail at run time.
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
    use crate::exit::ExitStatus;

    #[test]
    fn every_command_parses_without_clashing_arguments() {
        use clap::CommandFactory;
        // Each `state` command's `--format` (text or JSON) once clashed with
        // the output format of the run flags it took whole.
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "genledger",
            "state",
            "info",
            "--format",
            "json",
            "-o",
            "out",
        ]);
        assert!(matches!(
            cli.map(|c| c.command),
            Ok(Command::State(StateCommand::Info(StateArgs {
                format: SummaryFormat::Json,
                ..
            })))
        ));
    }

    #[test]
    fn help_lists_every_exit_code() {
        use ExitStatus::*;
        let statuses = [
            Success,
            Partial,
            Error,
            Refused,
            Locked,
            Unreachable,
            Interrupted,
        ];
        for status in statuses {
            // Exhaustive on purpose: a new status stops compiling here until
            // it is added to the list above (and to AFTER_HELP).
            match status {
                Success | Partial | Error | Refused | Locked | Unreachable | Interrupted => {}
            }
            let line = format!("\n  {:<4} ", status.code());
            assert!(AFTER_HELP.contains(&line), "{status:?} missing from --help");
        }
    }
}
