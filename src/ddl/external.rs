//! `genledger schema` for a remote output: the statements that read the
//! files where they are, for each warehouse that can. BigQuery gets an
//! external table over `gs://` with hive partitioning on `date`; Snowflake an
//! external stage, the table, and `COPY INTO … MATCH_BY_COLUMN_NAME` (whose
//! load history skips files it loaded before, so running it after every
//! export loads each file once); DuckDB a view over `read_parquet(…,
//! hive_partitioning = true)`.

use std::fmt::Write as _;

use super::{Sql, TableSpec, bigquery_type, header, sql_table};
use crate::objstore::{Cloud, RemoteUrl};
use crate::schema::MoneyMode;

/// What the statements need to know of the output.
pub struct External<'a> {
    pub url: &'a RemoteUrl,
    /// `parquet` or `csv`.
    pub extension: &'a str,
    pub money: MoneyMode,
}

impl External<'_> {
    /// `s3://bucket/prefix/<table>`, without a trailing `/`.
    fn table_url(&self, table: &TableSpec) -> String {
        self.url.object_url(table.name)
    }

    fn parquet(&self) -> bool {
        self.extension == "parquet"
    }
}

/// A BigQuery external table per table: hive-partitioned on `date`, the
/// columns typed as the JSON schema types them (money BIGNUMERIC).
pub(super) fn bigquery(out: &External<'_>, tables: &[TableSpec]) -> String {
    let mut text = String::new();
    if out.url.cloud != Cloud::Gcs {
        let _ = writeln!(
            text,
            "-- BigQuery reads external tables from Cloud Storage; `{}` is not `gs://`: \
             with BigQuery Omni add `WITH CONNECTION` and its region's dataset",
            out.url
        );
    }
    for table in tables {
        let _ = writeln!(
            text,
            "-- {}",
            header(table, "BigQuery (external table)", out.money)
        );
        let _ = writeln!(
            text,
            "CREATE EXTERNAL TABLE IF NOT EXISTS `DATASET.{}` (",
            table.name
        );
        let last = table.columns.len().saturating_sub(1);
        for (i, c) in table.columns.iter().enumerate() {
            let comma = if i == last { "" } else { "," };
            let _ = writeln!(
                text,
                "    {} {}{comma}",
                c.name,
                bigquery_type(c.ty, out.money)
            );
        }
        let base = out.table_url(table);
        let format = if out.parquet() { "PARQUET" } else { "CSV" };
        let csv = if out.parquet() {
            ""
        } else {
            ",\n    skip_leading_rows = 1"
        };
        let _ = writeln!(
            text,
            ")\nWITH PARTITION COLUMNS (date DATE)\nOPTIONS (\n    format = '{format}',\n    \
             uris = ['{base}/*'],\n    hive_partition_uri_prefix = '{base}',\n    \
             require_hive_partition_filter = false{csv}\n);\n"
        );
    }
    text
}

/// The stage URL as Snowflake spells it.
fn stage_url(url: &RemoteUrl) -> String {
    let path = match url.prefix.is_empty() {
        true => String::new(),
        false => format!("{}/", url.prefix),
    };
    match url.cloud {
        Cloud::S3 => format!("s3://{}/{path}", url.bucket),
        Cloud::Gcs => format!("gcs://{}/{path}", url.bucket),
        Cloud::Azure => format!(
            "azure://ACCOUNT.blob.core.windows.net/{}/{path}",
            url.bucket
        ),
    }
}

/// A Snowflake external stage on the output, each table, and the `COPY
/// INTO` that loads the files not loaded yet.
pub(super) fn snowflake(out: &External<'_>, tables: &[TableSpec]) -> String {
    let format = if out.parquet() {
        "TYPE = PARQUET"
    } else {
        "TYPE = CSV PARSE_HEADER = TRUE FIELD_OPTIONALLY_ENCLOSED_BY = '\"' EMPTY_FIELD_AS_NULL = TRUE"
    };
    let mut text = format!(
        "-- genledger {}: the output `{}` as a Snowflake external stage\n\
         -- The storage integration grants Snowflake read access to the bucket (CREATE STORAGE INTEGRATION).\n",
        env!("CARGO_PKG_VERSION"),
        out.url
    );
    if out.url.cloud == Cloud::Azure {
        text.push_str("-- Replace ACCOUNT with the storage account's name.\n");
    }
    let _ = writeln!(
        text,
        "CREATE STAGE IF NOT EXISTS genledger_output\n    URL = '{}'\n    \
         STORAGE_INTEGRATION = genledger_integration\n    FILE_FORMAT = ({format});\n",
        stage_url(out.url)
    );
    for table in tables {
        text.push_str(&sql_table(Sql::Snowflake, table, out.money));
        let _ = writeln!(
            text,
            "-- Loads each file once: COPY skips files its load history holds (64 days).\n\
             COPY INTO {name}\n    FROM @genledger_output/{name}/\n    \
             PATTERN = '.*/part-[^/]*[.]{ext}'\n    FILE_FORMAT = ({format})\n    \
             MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE;\n",
            name = table.name,
            ext = out.extension,
        );
    }
    text
}

/// A DuckDB view per table over the files where they are (the `httpfs`
/// extension for `s3://` and `gs://`, `azure` for `az://`).
pub(super) fn duckdb(out: &External<'_>, tables: &[TableSpec]) -> String {
    let (extension, secret) = match out.url.cloud {
        Cloud::S3 => (
            "httpfs",
            "CREATE SECRET (TYPE S3, PROVIDER CREDENTIAL_CHAIN);",
        ),
        Cloud::Gcs => (
            "httpfs",
            "CREATE SECRET (TYPE GCS, KEY_ID 'HMAC_KEY', SECRET 'HMAC_SECRET');",
        ),
        Cloud::Azure => (
            "azure",
            "CREATE SECRET (TYPE AZURE, PROVIDER CREDENTIAL_CHAIN, ACCOUNT_NAME 'ACCOUNT');",
        ),
    };
    let mut text = format!(
        "-- genledger {}: the output `{}` read in place by DuckDB\n\
         INSTALL {extension};\nLOAD {extension};\n{secret}\n\n",
        env!("CARGO_PKG_VERSION"),
        out.url
    );
    for table in tables {
        let files = format!("{}/*/*.{}", out.table_url(table), out.extension);
        let reader = if out.parquet() {
            format!("read_parquet('{files}', hive_partitioning = true)")
        } else {
            format!("read_csv('{files}', header = true, hive_partitioning = true)")
        };
        let _ = writeln!(
            text,
            "-- {}\nCREATE OR REPLACE VIEW {} AS\nSELECT * FROM {reader};\n",
            header(table, "DuckDB (read in place)", out.money),
            table.name
        );
    }
    text
}
