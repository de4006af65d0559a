//! The benchmark's rate table: genledger against each kind of limiter the
//! simulator plays, at 1, 5 and 20 times the limit, plus a limit that halves
//! mid-run and a second run that starts from the learned rate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use super::{Figures, Sim, export, write_ids};

/// One limiter as simulator flags.
struct Kind {
    name: &'static str,
    flags: &'static [&'static str],
}

/// Token buckets with an exact wait and with a whole second in each header
/// style, and windows announced by `X-RateLimit-*` on every answer.
const KINDS: [Kind; 8] = [
    Kind {
        name: "bucket, exact wait (retry-after-ms)",
        flags: &["--rate-limit-style", "retry-after-ms"],
    },
    Kind {
        name: "bucket, Retry-After: 1",
        flags: &[
            "--retry-after",
            "1s",
            "--rate-limit-style",
            "retry-after-seconds",
        ],
    },
    Kind {
        name: "bucket, Retry-After: HTTP-date +1s",
        flags: &[
            "--retry-after",
            "1s",
            "--rate-limit-style",
            "retry-after-date",
        ],
    },
    Kind {
        name: "bucket, retry-after-ms: 1000",
        flags: &[
            "--retry-after",
            "1s",
            "--rate-limit-style",
            "retry-after-ms",
        ],
    },
    Kind {
        name: "bucket, X-RateLimit-Reset +1s",
        flags: &["--retry-after", "1s", "--rate-limit-style", "reset-seconds"],
    },
    Kind {
        name: "fixed window 3s, X-RateLimit-*",
        flags: &[
            "--limiter",
            "fixed-window",
            "--rate-window",
            "3s",
            "--rate-headers",
            "--rate-limit-style",
            "reset-seconds",
        ],
    },
    Kind {
        name: "sliding window 10s, X-RateLimit-*",
        flags: &[
            "--limiter",
            "sliding-window",
            "--rate-window",
            "10s",
            "--rate-headers",
            "--rate-limit-style",
            "reset-seconds",
        ],
    },
    // A one-second window whose reset is announced in whole seconds: the
    // rounding alone can double a wait.
    Kind {
        name: "sliding window 1s, X-RateLimit-*",
        flags: &[
            "--limiter",
            "sliding-window",
            "--rate-window",
            "1s",
            "--rate-headers",
            "--rate-limit-style",
            "reset-seconds",
        ],
    },
];

/// The bucket's burst in every run, as in the field measurements.
const SERVER_BURST: &str = "5";

/// Prints the table's rows as they are measured and returns them.
pub(super) fn table(exe: &Path, dir: &Path, rate: f64, secs: u64) -> anyhow::Result<Vec<String>> {
    let n = (rate * secs as f64).round() as u64;
    let mut rows = vec![format!(
        "rate table: R = {rate} req/s, {n} IDs a run; achieved = exported/s ÷ R; late = requests arriving >20 ms into an announced pause; settled = first second after which every 3 s holds ≥ 85 % of R with ≤ 2 % 429s"
    )];
    rows.push(format!(
        "{:<36} {:>4} {:>9} {:>7} {:>5} {:>8}",
        "limiter", "set", "achieved", "429s", "late", "settled"
    ));
    let out = dir.join("rate-out");
    let rate_arg = rate.to_string();
    // Every run starts from an empty output, so one list serves them all.
    let ids = write_ids(dir, n, n)?;
    for kind in &KINDS {
        for factor in [1.0, 5.0, 20.0] {
            let mut flags = vec!["--rate-limit", &rate_arg, "--rate-burst", SERVER_BURST];
            flags.extend_from_slice(kind.flags);
            let sim = Sim::start(exe, &flags)?;
            eprintln!("rate table: {} at {factor}R ...", kind.name);
            let r = export(exe, &sim.base_url, &ids, &out, rate * factor, true)?;
            let stats = sim_stats(&sim.listen)?;
            let row = Row::new(&r, &stats, rate);
            rows.push(format!("{:<36} {:>3}R {}", kind.name, factor, row.cells()));
            eprintln!("  {}", rows.last().map_or("", String::as_str));
            if factor == 5.0 && kind.name.contains("Retry-After: 1") {
                // The same server right after: the second run starts from the
                // rate the first one learned and kept in the ledger.
                let again = write_ids(dir, n, n + 1)?;
                let r = export(exe, &sim.base_url, &again, &out, rate * factor, false)?;
                let share_429 = r.rate_limited as f64 / r.requests.max(1) as f64;
                rows.push(format!(
                    "{:<36} {:>3}R {:>8.1}% {:>6.2}%   (second run, learned rate {})",
                    "  the same, run again at once",
                    factor,
                    r.exported as f64 / r.duration_secs / rate * 100.0,
                    share_429 * 100.0,
                    r.learned
                        .map_or_else(|| "none".into(), |l| format!("{l:.1}/s")),
                ));
                eprintln!("  {}", rows.last().map_or("", String::as_str));
            }
        }
    }
    rows.push(halving(exe, dir, rate, secs)?);
    Ok(rows)
}

/// The limit halves 15 s into a run at 5R (a Retry-After: 1 bucket): how
/// soon the sending rate is under it, and how much of it is then used.
fn halving(exe: &Path, dir: &Path, rate: f64, secs: u64) -> anyhow::Result<String> {
    const HALVE_AT: usize = 15;
    let n = (rate * HALVE_AT as f64 + rate / 2.0 * secs.max(30) as f64).round() as u64;
    let ids = write_ids(dir, n, n)?;
    let rate_arg = rate.to_string();
    let flags = [
        "--rate-limit",
        &rate_arg,
        "--rate-burst",
        SERVER_BURST,
        "--retry-after",
        "1s",
        "--rate-limit-style",
        "retry-after-seconds",
        "--rate-halve-after",
        "15s",
    ];
    let sim = Sim::start(exe, &flags)?;
    eprintln!("rate table: limit halved after {HALVE_AT} s ...");
    export(
        exe,
        &sim.base_url,
        &ids,
        &dir.join("rate-out"),
        rate * 5.0,
        true,
    )?;
    let stats = sim_stats(&sim.listen)?;
    let timeline = timeline(&stats);
    let half = rate / 2.0;
    // Seconds after the halving until every later second's arrivals (the
    // last, partial one aside) stay within 5 % of the new limit.
    let full = timeline.len().saturating_sub(1);
    let under = (HALVE_AT..full)
        .find(|&s| {
            timeline[s..full]
                .iter()
                .all(|[ok, limited]| (ok + limited) as f64 <= half * 1.05)
        })
        .map(|s| s - HALVE_AT);
    let used = under.map(|u| {
        let from = HALVE_AT + u;
        let ok: u64 = timeline[from..full].iter().map(|[ok, _]| ok).sum();
        ok as f64 / (half * (full - from).max(1) as f64)
    });
    Ok(format!(
        "limit halved at {HALVE_AT}s (bucket, Retry-After: 1, set 5R): under R/2 after {} s, then {} of R/2 accepted",
        under.map_or_else(|| "never".into(), |u| u.to_string()),
        used.map_or_else(|| "-".into(), |u| format!("{:.1}%", u * 100.0))
    ))
}

/// One row's figures.
struct Row {
    achieved: f64,
    share_429: f64,
    late: u64,
    settled: Option<usize>,
}

impl Row {
    fn new(r: &Figures, stats: &Value, rate: f64) -> Row {
        let timeline = timeline(stats);
        Row {
            achieved: r.exported as f64 / r.duration_secs / rate,
            share_429: r.rate_limited as f64 / r.requests.max(1) as f64,
            late: stats["late_in_pause"].as_u64().unwrap_or(0),
            settled: settled(&timeline, rate),
        }
    }

    fn cells(&self) -> String {
        format!(
            "{:>8.1}% {:>6.2}% {:>5} {:>8}",
            self.achieved * 100.0,
            self.share_429 * 100.0,
            self.late,
            self.settled
                .map_or_else(|| "never".into(), |s| format!("{s}s"))
        )
    }
}

/// The first second after which every complete 3-second span accepts at
/// least 85 % of `rate` with at most 2 % of its answers 429.
fn settled(timeline: &[[u64; 2]], rate: f64) -> Option<usize> {
    // The last second is partial: the run ended inside it.
    let full = timeline.len().saturating_sub(1);
    let good = |s: usize| {
        let (ok, limited) = timeline[s..s + 3]
            .iter()
            .fold((0, 0), |(a, b), [ok, l]| (a + ok, b + l));
        ok as f64 >= 0.85 * rate * 3.0 && limited as f64 <= 0.02 * (ok + limited) as f64
    };
    (0..full.saturating_sub(2)).find(|&s| (s..full - 2).all(good))
}

fn timeline(stats: &Value) -> Vec<[u64; 2]> {
    stats["timeline"]
        .as_array()
        .map(|seconds| {
            seconds
                .iter()
                .map(|pair| [pair[0].as_u64().unwrap_or(0), pair[1].as_u64().unwrap_or(0)])
                .collect()
        })
        .unwrap_or_default()
}

/// The simulator's counters, from `GET /_sim/stats`.
fn sim_stats(listen: &str) -> anyhow::Result<Value> {
    let mut stream = TcpStream::connect(listen).context("cannot reach the simulator")?;
    write!(
        stream,
        "GET /_sim/stats HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .context("the simulator's stats answer has no body")?;
    serde_json::from_str(body).context("the simulator's stats are not JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_at_the_first_second_after_which_every_span_is_good() {
        let r = 100.0;
        let line = [
            [10, 5],
            [100, 0],
            [99, 1],
            [100, 0],
            [98, 0],
            [100, 0],
            [40, 0],
        ];
        assert_eq!(settled(&line, r), Some(1));
        let dip = [
            [100, 0],
            [100, 0],
            [100, 0],
            [0, 90],
            [100, 0],
            [100, 0],
            [100, 0],
            [5, 0],
        ];
        assert_eq!(settled(&dip, r), Some(4));
        assert_eq!(settled(&[[50, 0]; 10], r), None);
    }
}
