//! `genledger schema`: the output tables' definitions for each warehouse,
//! generated from the column tables ([`Row::COLUMNS`]), so they name exactly
//! the columns and types the files hold.

mod external;

pub use external::External;

use clap::ValueEnum;
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt::Write as _;

use crate::record::{Content, Focus, Generation};
use crate::schema::{ColumnType, MoneyMode, Row, arrow_type};

/// Where the definitions are meant to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    /// The Arrow schema of the Parquet files.
    Arrow,
    /// `CREATE TABLE` for DuckDB.
    Duckdb,
    /// BigQuery JSON schema files (`bq mk --schema`).
    Bigquery,
    /// `CREATE TABLE` for Snowflake.
    Snowflake,
    /// `CREATE TABLE` for PostgreSQL.
    Postgres,
}

/// An output table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Table {
    Generations,
    Content,
    /// The FOCUS 1.2 cost and usage table (`output.tables` with `focus`).
    Focus,
}

/// The definitions of `tables` in `dialect`, as `genledger schema` prints them.
pub fn render(dialect: Dialect, money: MoneyMode, tables: &[Table]) -> String {
    let tables: Vec<TableSpec> = tables.iter().map(|t| TableSpec::of(*t)).collect();
    match dialect {
        Dialect::Arrow => tables
            .iter()
            .map(|t| arrow_table(t, money))
            .collect::<Vec<_>>()
            .join("\n"),
        Dialect::Bigquery => bigquery(&tables, money),
        Dialect::Duckdb => sql_tables(Sql::Duckdb, &tables, money),
        Dialect::Snowflake => sql_tables(Sql::Snowflake, &tables, money),
        Dialect::Postgres => sql_tables(Sql::Postgres, &tables, money),
    }
}

/// The statements that read a remote output in place, for the dialects
/// that can (BigQuery, Snowflake, DuckDB); `None` for the others.
pub fn render_external(dialect: Dialect, out: &External<'_>, tables: &[Table]) -> Option<String> {
    let tables: Vec<TableSpec> = tables.iter().map(|t| TableSpec::of(*t)).collect();
    match dialect {
        Dialect::Bigquery => Some(external::bigquery(out, &tables)),
        Dialect::Snowflake => Some(external::snowflake(out, &tables)),
        Dialect::Duckdb => Some(external::duckdb(out, &tables)),
        Dialect::Arrow | Dialect::Postgres => None,
    }
}

/// A table's name and columns, without the row accessors.
struct TableSpec {
    name: &'static str,
    columns: Vec<ColumnSpec>,
}

struct ColumnSpec {
    name: &'static str,
    ty: ColumnType,
    nullable: bool,
}

impl TableSpec {
    fn of(table: Table) -> TableSpec {
        match table {
            Table::Generations => TableSpec::from_row::<Generation>(),
            Table::Content => TableSpec::from_row::<Content>(),
            Table::Focus => TableSpec::from_row::<Focus>(),
        }
    }

    fn from_row<R: Row>() -> TableSpec {
        let columns = R::COLUMNS.iter().map(|c| ColumnSpec {
            name: c.name,
            ty: c.ty,
            nullable: c.nullable,
        });
        TableSpec {
            name: R::TABLE,
            columns: columns.collect(),
        }
    }

    fn json_columns(&self) -> Vec<&'static str> {
        let json = self.columns.iter().filter(|c| c.ty == ColumnType::Json);
        json.map(|c| c.name).collect()
    }
}

/// The first comment line: what the definition is for.
fn header(table: &TableSpec, target: &str, money: MoneyMode) -> String {
    let mut line = format!(
        "genledger {}: table `{}` for {target}",
        env!("CARGO_PKG_VERSION"),
        table.name,
    );
    if table.columns.iter().any(|c| c.ty == ColumnType::Money) {
        line.push_str(match money {
            MoneyMode::Decimal => "; money as exact decimals (output.money = \"decimal\")",
            MoneyMode::Float64 => "; money as doubles (output.money = \"float64\")",
        });
    }
    line
}

fn arrow_table(table: &TableSpec, money: MoneyMode) -> String {
    let mut out = format!(
        "# {}\n",
        header(table, "Arrow, as its Parquet files read", money)
    );
    for c in &table.columns {
        let not_null = if c.nullable { "" } else { " not null" };
        // Writing into a String cannot fail.
        let _ = writeln!(out, "{}: {}{not_null}", c.name, arrow_type(c.ty, money));
    }
    out
}

/// The dialects written as `CREATE TABLE` statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sql {
    Duckdb,
    Snowflake,
    Postgres,
}

impl Sql {
    fn name(self) -> &'static str {
        match self {
            Sql::Duckdb => "DuckDB",
            Sql::Snowflake => "Snowflake",
            Sql::Postgres => "PostgreSQL",
        }
    }
}

/// The column type in a SQL dialect. JSON documents are stored as text in
/// the files; the type chosen for them loads that text unchanged.
fn sql_type(dialect: Sql, ty: ColumnType, money: MoneyMode) -> &'static str {
    use ColumnType as T;
    use Sql as D;
    let ty = match (ty, money) {
        (T::Money, MoneyMode::Float64) => T::Float,
        (ty, _) => ty,
    };
    match (dialect, ty) {
        (D::Duckdb | D::Snowflake, T::Text) => "VARCHAR",
        (D::Postgres, T::Text) => "TEXT",
        (D::Duckdb | D::Postgres, T::Timestamp) => "TIMESTAMPTZ",
        (D::Snowflake, T::Timestamp) => "TIMESTAMP_TZ",
        (D::Duckdb, T::Money) => "DECIMAL(38,18)",
        (D::Postgres, T::Money) => "NUMERIC(38,18)",
        (D::Snowflake, T::Money) => "NUMBER(38,18)",
        (D::Postgres, T::Float) => "DOUBLE PRECISION",
        (_, T::Float) => "DOUBLE",
        (_, T::Int) => "BIGINT",
        (_, T::Bool) => "BOOLEAN",
        (D::Duckdb, T::Json) => "JSON",
        (D::Postgres, T::Json) => "JSON",
        (D::Snowflake, T::Json) => "VARCHAR",
    }
}

/// What a dialect's comment says about the JSON text columns.
fn json_note(dialect: Sql) -> &'static str {
    match dialect {
        Sql::Duckdb => "typed JSON, which keeps the text as written",
        Sql::Postgres => "typed JSON, not JSONB, so the text is kept byte for byte",
        Sql::Snowflake => "typed VARCHAR, the JSON text as written; PARSE_JSON() reads it",
    }
}

/// A column's name in SQL: quoted when it has capitals (FOCUS's PascalCase
/// names), which PostgreSQL and Snowflake would otherwise fold.
fn sql_name(name: &str) -> String {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        format!("\"{name}\"")
    } else {
        name.to_owned()
    }
}

fn sql_tables(dialect: Sql, tables: &[TableSpec], money: MoneyMode) -> String {
    let tables = tables.iter().map(|t| sql_table(dialect, t, money));
    tables.collect::<Vec<_>>().join("\n")
}

fn sql_table(dialect: Sql, table: &TableSpec, money: MoneyMode) -> String {
    let mut out = format!("-- {}\n", header(table, dialect.name(), money));
    let json = table.json_columns();
    if !json.is_empty() {
        let _ = writeln!(
            out,
            "-- JSON documents in {}: {}",
            json.join(", "),
            json_note(dialect)
        );
    }
    if dialect == Sql::Snowflake {
        out.push_str(
            "-- Unquoted names are stored upper-case: load Parquet with MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE\n",
        );
    }
    let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS {} (", table.name);
    let last = table.columns.len().saturating_sub(1);
    for (i, c) in table.columns.iter().enumerate() {
        let not_null = if c.nullable { "" } else { " NOT NULL" };
        let comma = if i == last { "" } else { "," };
        let ty = sql_type(dialect, c.ty, money);
        let _ = writeln!(out, "    {} {ty}{not_null}{comma}", sql_name(c.name));
    }
    out.push_str(");\n");
    out
}

/// BigQuery's NUMERIC keeps only 9 decimals; BIGNUMERIC keeps 38, so scale
/// 18 loads exactly. BigQuery cannot batch-load Parquet into its JSON type,
/// so JSON documents are STRING (with a description saying so).
fn bigquery_type(ty: ColumnType, money: MoneyMode) -> &'static str {
    match (ty, money) {
        (ColumnType::Text | ColumnType::Json, _) => "STRING",
        (ColumnType::Timestamp, _) => "TIMESTAMP",
        (ColumnType::Money, MoneyMode::Decimal) => "BIGNUMERIC",
        (ColumnType::Money, MoneyMode::Float64) | (ColumnType::Float, _) => "FLOAT64",
        (ColumnType::Int, _) => "INT64",
        (ColumnType::Bool, _) => "BOOL",
    }
}

#[derive(serde::Serialize)]
struct BigQueryField {
    name: &'static str,
    #[serde(rename = "type")]
    ty: &'static str,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
}

fn bigquery_fields(table: &TableSpec, money: MoneyMode) -> Vec<BigQueryField> {
    let field = |c: &ColumnSpec| BigQueryField {
        name: c.name,
        ty: bigquery_type(c.ty, money),
        mode: if c.nullable { "NULLABLE" } else { "REQUIRED" },
        description: (c.ty == ColumnType::Json)
            .then_some("JSON document as text; PARSE_JSON() reads it as JSON"),
    };
    table.columns.iter().map(field).collect()
}

/// Tables in order as one JSON object of schemas.
struct BigQueryTables<'a>(&'a [TableSpec], MoneyMode);

impl Serialize for BigQueryTables<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for table in self.0 {
            map.serialize_entry(table.name, &bigquery_fields(table, self.1))?;
        }
        map.end()
    }
}

/// One table: its bare JSON schema. Several: an object of schemas by table name.
fn bigquery(tables: &[TableSpec], money: MoneyMode) -> String {
    let json = match tables {
        [table] => serde_json::to_string_pretty(&bigquery_fields(table, money)),
        _ => serde_json::to_string_pretty(&BigQueryTables(tables, money)),
    };
    // Serialising plain strings cannot fail.
    json.unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_marks_required_columns_and_ends_cleanly() {
        let ddl = render(Dialect::Postgres, MoneyMode::Decimal, &[Table::Content]);
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS content (\n    id TEXT NOT NULL,\n"));
        assert!(ddl.contains("    error JSON,\n    fetched_at TIMESTAMPTZ NOT NULL\n);\n"));
        assert!(ddl.contains("-- JSON documents in input_messages, error: typed JSON, not JSONB"));
        assert!(!ddl.contains("money"), "content has no money columns");
    }

    #[test]
    fn focus_names_keep_their_case_in_sql_and_money_is_exact() {
        for dialect in [Dialect::Duckdb, Dialect::Postgres, Dialect::Snowflake] {
            let ddl = render(dialect, MoneyMode::Decimal, &[Table::Focus]);
            assert!(ddl.contains("CREATE TABLE IF NOT EXISTS focus ("), "{ddl}");
            assert!(ddl.contains("    \"BilledCost\" "), "{ddl}");
            assert!(ddl.contains("    \"x_GenerationId\" "), "{ddl}");
            assert!(ddl.contains("(38,18) NOT NULL,"), "{ddl}");
        }
        let bq = render(Dialect::Bigquery, MoneyMode::Decimal, &[Table::Focus]);
        let bq: serde_json::Value = serde_json::from_str(&bq).unwrap();
        assert_eq!(bq[0]["name"], "BilledCost");
        assert_eq!(bq[0]["type"], "BIGNUMERIC");
        let arrow = render(Dialect::Arrow, MoneyMode::Decimal, &[Table::Focus]);
        assert!(
            arrow.contains("BilledCost: Decimal128(38, 18) not null"),
            "{arrow}"
        );
    }

    #[test]
    fn money_follows_the_mode_in_every_dialect() {
        let decimal = |d| sql_type(d, ColumnType::Money, MoneyMode::Decimal);
        let float = |d| sql_type(d, ColumnType::Money, MoneyMode::Float64);
        assert_eq!(decimal(Sql::Duckdb), "DECIMAL(38,18)");
        assert_eq!(decimal(Sql::Snowflake), "NUMBER(38,18)");
        assert_eq!(float(Sql::Postgres), "DOUBLE PRECISION");
        assert_eq!(
            bigquery_type(ColumnType::Money, MoneyMode::Decimal),
            "BIGNUMERIC"
        );
        assert_eq!(
            bigquery_type(ColumnType::Money, MoneyMode::Float64),
            "FLOAT64"
        );
    }

    #[test]
    fn bigquery_prints_a_bare_schema_for_one_table_and_an_object_for_all() {
        let one = render(Dialect::Bigquery, MoneyMode::Decimal, &[Table::Generations]);
        let one: serde_json::Value = serde_json::from_str(&one).unwrap();
        assert_eq!(one[0]["name"], "id");
        assert_eq!(one[0]["mode"], "REQUIRED");
        let all = render(
            Dialect::Bigquery,
            MoneyMode::Decimal,
            &[Table::Generations, Table::Content],
        );
        let all: serde_json::Value = serde_json::from_str(&all).unwrap();
        assert_eq!(all["content"][2]["name"], "input_prompt");
        assert_eq!(all["generations"], one);
    }
}
