//! Cron schedules: the daemon's export ticks and its daily reconciliation.

/// A six-field cron expression (seconds first, UTC), parsed once, as the
/// daemon's scheduler parses it.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub expr: String,
    pub cron: croner::Cron,
}

impl Schedule {
    /// Parses `expr` and names the problem if it cannot be used: wrong field
    /// count, bad syntax, or a schedule that never fires (`0 0 0 31 2 *`).
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        if fields != 6 {
            return Err(format!(
                "`{expr}` has {fields} fields; six are needed, seconds first (e.g. \"0 */5 * * * *\")"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map_err(|e| format!("`{expr}`: {e}"))?;
        let schedule = Schedule {
            expr: expr.to_owned(),
            cron,
        };
        if schedule.next_after(chrono::Utc::now()).is_none() {
            return Err(format!("`{expr}` never fires (no such date)"));
        }
        Ok(schedule)
    }

    /// The first tick after `now`.
    pub fn next_after(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.cron.find_next_occurrence(&now, false).ok()
    }
}
