//! The report's chart: daily cost stacked by model, as a standalone SVG file.
//!
//! One `<g class="series">` per model (its bars, most expensive model at the
//! bottom), a legend with each model's total, dates along x and dollars up y.
//! Amounts become `f64` here only to place pixels.

use std::fmt::Write as _;

use chrono::{Days, NaiveDate};

use super::{Report, Sums};
use crate::money::Money;

const WIDTH: f64 = 1000.0;
const PLOT_HEIGHT: f64 = 380.0;
const LEFT: f64 = 80.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 90.0;
const LEGEND_WIDTH: f64 = 300.0;
const LEGEND_ROW: f64 = 20.0;
/// Above this many days between the first and last, days without rows are
/// left out of the axis rather than drawn as empty slots.
const MAX_CONTINUOUS_DAYS: u64 = 400;

/// Tableau's 10 colours, then 10 of other hues or shades, so that no two
/// models share a colour up to 20. Beyond that the colours repeat.
const PALETTE: [&str; 20] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#a0cbe8", "#ffbe7d", "#6b3fa0", "#17becf", "#b6992d", "#1f3b73",
    "#d37295", "#8cd17d", "#7f7f7f", "#c85200",
];
/// Legend labels longer than this are cut (the full name is in the tooltip).
const LEGEND_CHARS: usize = 30;

/// The whole SVG document.
pub fn chart(report: &Report) -> String {
    let models = report.by_model();
    let days = axis_days(report);
    let plot_width = WIDTH - LEFT - LEGEND_WIDTH;
    let legend_height = TOP + 30.0 + LEGEND_ROW * models.len() as f64;
    let height = (TOP + PLOT_HEIGHT + BOTTOM).max(legend_height + 20.0);
    let day_totals: Vec<f64> = days
        .iter()
        .map(|d| {
            report
                .daily
                .get(d)
                .map_or(0.0, |m| m.values().map(|s| s.total_cost.to_f64()).sum())
        })
        .collect();
    let (top_value, step) = y_scale(day_totals.iter().copied().fold(0.0, f64::max));
    let y = |value: f64| TOP + PLOT_HEIGHT - value / top_value * PLOT_HEIGHT;
    let band = plot_width / days.len().max(1) as f64;

    let mut out = String::with_capacity(16 * 1024);
    let total = report.total();
    let _ = write!(
        out,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LEFT}" y="28" font-size="18" font-weight="bold">Daily cost by model (USD)</text>
<text x="{LEFT}" y="48" fill="#555555">{} rows, {} in total, from {}</text>
"##,
        total.rows,
        dollars(total.total_cost),
        escape(&report.dir.display().to_string()),
    );
    y_axis(&mut out, top_value, step, plot_width, y);
    x_axis(&mut out, &days, band);

    bars(&mut out, report, &models, &days, band, y);
    legend(&mut out, &models, WIDTH - LEGEND_WIDTH + 20.0);
    out.push_str("</svg>\n");
    out
}

/// One `<g class="series">` per model. Bars stack per day in legend order, so
/// each model sits at the same level of every stack.
fn bars(
    out: &mut String,
    report: &Report,
    models: &[(&str, Sums)],
    days: &[NaiveDate],
    band: f64,
    y: impl Fn(f64) -> f64,
) {
    let bar = (band * 0.75).max(1.0);
    let mut base = vec![0.0_f64; days.len()];
    for (index, (model, _)) in models.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let _ = writeln!(
            out,
            r#"<g class="series" data-model="{}" fill="{color}">"#,
            escape(model)
        );
        for (slot, day) in days.iter().enumerate() {
            let Some(sums) = report.daily.get(day).and_then(|m| m.get(*model)) else {
                continue;
            };
            let value = sums.total_cost.to_f64();
            let (low, high) = (base[slot], base[slot] + value);
            base[slot] = high;
            let x = LEFT + band * slot as f64 + (band - bar) / 2.0;
            let _ = writeln!(
                out,
                r#"<rect x="{x:.2}" y="{:.2}" width="{bar:.2}" height="{:.2}"><title>{day} {}: ${}</title></rect>"#,
                y(high),
                (y(low) - y(high)).max(0.0),
                escape(model),
                sums.total_cost,
            );
        }
        out.push_str("</g>\n");
    }
}

/// The days along x: every day from the first to the last, or only the days
/// with rows when that range is very long.
fn axis_days(report: &Report) -> Vec<NaiveDate> {
    let present: Vec<NaiveDate> = report.daily.keys().copied().collect();
    let (Some(first), Some(last)) = (present.first(), present.last()) else {
        return present;
    };
    let span = (*last - *first).num_days().unsigned_abs();
    if span > MAX_CONTINUOUS_DAYS {
        return present;
    }
    (0..=span)
        .filter_map(|n| first.checked_add_days(Days::new(n)))
        .collect()
}

/// The axis top and tick step: a round step (1, 2 or 5 × 10ⁿ) giving at most
/// six intervals.
fn y_scale(max: f64) -> (f64, f64) {
    if !(max > 0.0 && max.is_finite()) {
        return (1.0, 0.2);
    }
    let rough = max / 6.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    ((max / step).ceil() * step, step)
}

fn y_axis(out: &mut String, top: f64, step: f64, plot_width: f64, y: impl Fn(f64) -> f64) {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    let ticks = (top / step).round() as usize;
    for i in 0..=ticks {
        let value = step * i as f64;
        let at = y(value);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{at:.2}\" x2=\"{:.2}\" y2=\"{at:.2}\" stroke=\"#e0e0e0\"/>\n<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\" fill=\"#333333\">${value:.decimals$}</text>",
            LEFT + plot_width,
            LEFT - 8.0,
            at + 4.0,
        );
    }
    let middle = TOP + PLOT_HEIGHT / 2.0;
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.2}\" stroke=\"#333333\"/>\n<text transform=\"translate(20 {middle}) rotate(-90)\" text-anchor=\"middle\" font-weight=\"bold\">Cost (USD)</text>",
        TOP + PLOT_HEIGHT,
    );
}

fn x_axis(out: &mut String, days: &[NaiveDate], band: f64) {
    let baseline = TOP + PLOT_HEIGHT;
    let plot_width = band * days.len() as f64;
    // A label needs about 22 px across when slanted; skip days to fit.
    let every = ((22.0 / band).ceil() as usize).max(1);
    for (slot, day) in days.iter().enumerate().step_by(every) {
        let x = LEFT + band * (slot as f64 + 0.5);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.2}\" y1=\"{baseline}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#333333\"/>\n<text transform=\"translate({x:.2} {:.2}) rotate(-40)\" text-anchor=\"end\" fill=\"#333333\">{day}</text>",
            baseline + 5.0,
            baseline + 16.0,
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{baseline}\" x2=\"{:.2}\" y2=\"{baseline}\" stroke=\"#333333\"/>\n<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\" font-weight=\"bold\">Day (UTC, by created_at)</text>",
        LEFT + plot_width,
        LEFT + plot_width / 2.0,
        baseline + BOTTOM - 8.0,
    );
}

fn legend(out: &mut String, models: &[(&str, Sums)], x: f64) {
    let _ = writeln!(
        out,
        "<text x=\"{x}\" y=\"{TOP}\" font-weight=\"bold\">Model (total USD)</text>"
    );
    for (index, (model, sums)) in models.iter().enumerate() {
        let y = TOP + 12.0 + LEGEND_ROW * index as f64;
        let color = PALETTE[index % PALETTE.len()];
        let text_y = y + 10.5;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\n<text x=\"{:.2}\" y=\"{text_y:.2}\"><title>{}</title>{}</text>\n<text x=\"{:.2}\" y=\"{text_y:.2}\" text-anchor=\"end\">{}</text>",
            x + 18.0,
            escape(model),
            escape(&shorten(model)),
            WIDTH - 12.0,
            dollars(sums.total_cost),
        );
    }
}

/// An amount for reading at a glance: cents, or two significant digits
/// below a cent. The exact amounts are in the tooltips and the report.
fn dollars(amount: Money) -> String {
    let value = amount.to_f64();
    if value == 0.0 || value.abs() >= 0.01 {
        return format!("${value:.2}");
    }
    let decimals = (-value.abs().log10()).ceil() as usize + 1;
    format!("${value:.decimals$}")
}

fn shorten(model: &str) -> String {
    if model.chars().count() <= LEGEND_CHARS {
        return model.to_owned();
    }
    let kept: String = model.chars().take(LEGEND_CHARS - 1).collect();
    kept + "…"
}

/// Text safe inside an element or a double-quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even as references.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_forbidden_characters() {
        assert_eq!(
            escape("a<b>&\"c'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{fffd}"
        );
    }

    #[test]
    fn amounts_read_at_a_glance() {
        let text = |t| dollars(Money::parse(t).unwrap());
        assert_eq!(text("27.86729326512345674"), "$27.87");
        assert_eq!(text("0.0031"), "$0.0031");
        assert_eq!(text("0"), "$0.00");
    }

    #[test]
    fn y_axis_steps_are_round_and_cover_the_maximum() {
        assert_eq!(y_scale(9.3), (10.0, 2.0));
        let (top, step) = y_scale(0.042);
        assert!((top - 0.05).abs() < 1e-12 && (step - 0.01).abs() < 1e-12);
        assert_eq!(y_scale(0.0), (1.0, 0.2));
        let (top, step) = y_scale(1234.0);
        assert!(top >= 1234.0 && top / step <= 6.0);
    }
}
