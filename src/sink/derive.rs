//! Tables derived row by row from another (`focus` from `generations`). A
//! derived table's file pairs with its source table's file: the same
//! partition, the same name, the same rows (their IDs linked to both), and
//! it is published just before its source file and committed with it in
//! one ledger transaction. Start-up reconciliation treats files that share
//! a name as one unit, so the two tables hold the same generations, each
//! exactly once, however the process ends.

use std::sync::Arc;

use chrono::NaiveDate;

use super::SinkError;
use super::file::{OpenFile, RowKey};
use crate::config::OutputSettings;
use crate::ledger::Ledger;
use crate::record::{Focus, FocusAccount, Generation};
use crate::schema::{Row, Value};

/// How a derived table's row is made from a source row's cells.
pub trait Derive: Send + 'static {
    type Row: Row;
    fn derive(&self, cells: &[Value<'_>]) -> Self::Row;
}

/// The `focus` table from `generations` rows.
pub struct FocusOf(pub Arc<FocusAccount>);

impl Derive for FocusOf {
    type Row = Focus;

    fn derive(&self, cells: &[Value<'_>]) -> Focus {
        Focus::new(Generation::from_cells(cells), Arc::clone(&self.0))
    }
}

/// A derived table, its row type erased, as the partitioned writer holds it.
pub(super) trait Companion: Send {
    /// Opens the derived file paired with `source`.
    fn open(
        &self,
        settings: &OutputSettings,
        run_id: &str,
        date: NaiveDate,
        source: &OpenFile,
        ledger: &mut Ledger,
    ) -> Result<OpenFile, SinkError>;

    /// Writes the row derived from `cells` into `file`.
    fn write(
        &self,
        file: &mut OpenFile,
        key: RowKey,
        cells: &[Value<'_>],
        ledger: &mut Ledger,
    ) -> Result<(), SinkError>;
}

impl<D: Derive> Companion for D {
    fn open(
        &self,
        settings: &OutputSettings,
        run_id: &str,
        date: NaiveDate,
        source: &OpenFile,
        ledger: &mut Ledger,
    ) -> Result<OpenFile, SinkError> {
        OpenFile::create_named::<D::Row>(settings, run_id, date, &source.name(), ledger)
    }

    fn write(
        &self,
        file: &mut OpenFile,
        key: RowKey,
        cells: &[Value<'_>],
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        let row = self.derive(cells);
        let derived = D::Row::COLUMNS.iter().map(|column| (column.get)(&row));
        file.write(key, derived, ledger)
    }
}
