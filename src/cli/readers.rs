//! The arguments of the commands that read an export or describe its tables:
//! `schema`, `report`, `reconcile`.

use std::path::PathBuf;

use clap::Args;

use crate::ddl::{Dialect, Table};
use crate::reconcile::render::ReconcileFormat;
use crate::report::{Dim, ReportFormat};
use crate::schema::MoneyMode;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Export directory (the `output.dir` of a run, holding `generations/`).
    pub dir: PathBuf,
    /// First UTC day to compare (default: 30 days before today).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<chrono::NaiveDate>,
    /// Last UTC day to compare (default: yesterday; the API has completed days only).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<chrono::NaiveDate>,
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = ReconcileFormat::Text)]
    pub format: ReconcileFormat,
    /// Compare only the generations made with the API key of this SHA-256
    /// (hex, as the keys API lists it): the key the application uses.
    #[arg(long, value_name = "HASH")]
    pub api_key_hash: Option<String>,
    /// API base URL. Overrides `api.base_url`.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Export directory (the `output.dir` of a run, holding `generations/`).
    pub dir: PathBuf,
    /// Also sum by these columns together (comma-separated), one row per
    /// combination: model, provider, app_id, external_user, workspace_id,
    /// api_type, day.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "COLUMNS")]
    pub by: Vec<Dim>,
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Also write a chart of daily cost by model to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
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
