//! `genledger reconcile DIR`: the export against OpenRouter's daily totals.

use std::path::Path;

use anyhow::bail;

use crate::cli::{ReconcileArgs, RunFlags};
use crate::config;
use crate::exit::ExitStatus;
use crate::reconcile::render::{self, ReconcileFormat};
use crate::reconcile::{Tolerance, Window, reconcile, summarize};

/// Prints the comparison; exit 0 when everything agrees, 1 when not.
pub async fn run(config_file: Option<&Path>, args: &ReconcileArgs) -> anyhow::Result<ExitStatus> {
    let flags = RunFlags {
        base_url: args.base_url.clone(),
        ..RunFlags::default()
    };
    let settings = config::load(config_file, flags)?.resolve()?;
    let Some(key) = &settings.management_key else {
        bail!(
            "no management key: the Activity API needs one; set `{}` or `api.management_key_file`",
            config::MANAGEMENT_KEY_ENV
        );
    };
    // A key pasted where its hash belongs would travel in the URL, which
    // errors show: refuse anything but a SHA-256 (and do not echo it).
    let hash_ok = |h: &String| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    if args.api_key_hash.as_ref().is_some_and(|h| !hash_ok(h)) {
        bail!(
            "--api-key-hash takes the SHA-256 of a key: 64 hexadecimal digits, not the key itself"
        );
    }
    let today = chrono::Utc::now().date_naive();
    let default = Window::last_30_days(today);
    let window = Window {
        from: args.from.unwrap_or(default.from),
        to: args.to.unwrap_or(default.to),
    };
    if window.from > window.to {
        bail!("--from {} is after --to {}", window.from, window.to);
    }
    let rows = reconcile(
        &settings.api,
        key,
        &args.dir,
        window,
        args.api_key_hash.clone(),
        Tolerance::default(),
    )
    .await?;
    let summary = summarize(&rows);
    tracing::info!(
        groups = summary.groups,
        differing = summary.differing_groups,
        missing_requests = summary.missing_requests,
        "reconciled"
    );
    let text = match args.format {
        ReconcileFormat::Text => render::text(window, &rows, &summary),
        ReconcileFormat::Json => render::json(window, &rows, &summary)?,
        ReconcileFormat::Csv => render::csv(&rows)?,
    };
    print!("{text}");
    Ok(if summary.differing_groups == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Partial
    })
}
