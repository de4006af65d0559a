//! Files read back with the Parquet and CSV readers equal the simulator's records.

use std::collections::HashSet;
use std::time::Duration;

use arrow_schema::{DataType, TimeUnit};
use genledger::config::Format;
use genledger::money::Money;
use genledger::simulator::SimConfig;
use genledger::simulator::record::{SimGeneration, generation};
use genledger::timestamp::format_timestamp;

use crate::support::*;

/// What the files must say for a simulator record, as text.
fn expected(sim: &SimGeneration) -> Row {
    let text = |v: &Option<String>| v.clone();
    let int = |v: Option<i64>| v.map(|v| v.to_string());
    let float = |v: Option<f64>| v.map(|v| v.to_string());
    let boolean = |v: Option<bool>| v.map(|v| v.to_string());
    let money = |v: &Option<String>| v.as_ref().map(|t| Money::parse(t).unwrap().to_string());
    let created = chrono::DateTime::parse_from_rfc3339(&sim.created_at)
        .unwrap()
        .timestamp_micros();
    let mut row = Row::new();
    let mut put = |k: &str, v: Option<String>| {
        row.insert(k.to_owned(), v);
    };
    put("id", Some(sim.id.clone()));
    put("created_at", Some(format_timestamp(created)));
    put("model", text(&sim.model));
    put("provider_name", text(&sim.provider_name));
    put("api_type", text(&sim.api_type));
    put("router", text(&sim.router));
    put("upstream_id", text(&sim.upstream_id));
    put("origin", text(&sim.origin));
    put("app_id", int(sim.app_id));
    put("external_user", text(&sim.external_user));
    put("session_id", text(&sim.session_id));
    put("request_id", text(&sim.request_id));
    put("workspace_id", text(&sim.workspace_id));
    put("preset_id", text(&sim.preset_id));
    put("data_region", text(&sim.data_region));
    put("total_cost", money(&sim.total_cost));
    put("usage", money(&sim.usage));
    put(
        "upstream_inference_cost",
        money(&sim.upstream_inference_cost),
    );
    put("cache_discount", money(&sim.cache_discount));
    put("is_byok", boolean(sim.is_byok));
    put("tokens_prompt", int(sim.tokens_prompt));
    put("tokens_completion", int(sim.tokens_completion));
    put("native_tokens_prompt", int(sim.native_tokens_prompt));
    put(
        "native_tokens_completion",
        int(sim.native_tokens_completion),
    );
    put(
        "native_tokens_completion_images",
        int(sim.native_tokens_completion_images),
    );
    put("native_tokens_reasoning", int(sim.native_tokens_reasoning));
    put("native_tokens_cached", int(sim.native_tokens_cached));
    put("num_media_prompt", int(sim.num_media_prompt));
    put("num_input_audio_prompt", int(sim.num_input_audio_prompt));
    put("num_media_completion", int(sim.num_media_completion));
    put("num_search_results", int(sim.num_search_results));
    put("num_fetches", int(sim.num_fetches));
    put("web_search_engine", text(&sim.web_search_engine));
    put("latency_ms", float(sim.latency));
    put("generation_time_ms", float(sim.generation_time));
    put("moderation_latency_ms", float(sim.moderation_latency));
    put("streamed", boolean(sim.streamed));
    put("cancelled", boolean(sim.cancelled));
    put("finish_reason", text(&sim.finish_reason));
    put("native_finish_reason", text(&sim.native_finish_reason));
    put("service_tier", text(&sim.service_tier));
    put(
        "response_cache_source_id",
        text(&sim.response_cache_source_id),
    );
    put("provider_responses", text(&sim.provider_responses));
    row
}

/// `extra` holds every field the columns do not: unknown ones and the known
/// API fields without a column, each with its exact JSON text.
fn check_extra(sim: &SimGeneration, extra: Option<&String>) {
    let mut known = Vec::new();
    for (name, value) in [
        ("http_referer", &sim.http_referer),
        ("user_agent", &sim.user_agent),
    ] {
        if let Some(v) = value {
            known.push((name, v.clone()));
        }
    }
    // Null values carry nothing and are left out.
    let unknown: Vec<_> = sim
        .unknown
        .iter()
        .filter(|(_, raw)| raw != "null")
        .collect();
    let Some(extra) = extra else {
        assert!(
            unknown.is_empty() && known.is_empty(),
            "{}: extra is null",
            sim.id
        );
        return;
    };
    let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(extra).unwrap();
    assert_eq!(
        parsed.len(),
        unknown.len() + known.len(),
        "{}: extra = {extra}",
        sim.id
    );
    for (name, raw) in unknown {
        let exact = format!("{}:{raw}", serde_json::to_string(name).unwrap());
        assert!(
            extra.contains(&exact),
            "{}: {name} byte for byte in {extra}",
            sim.id
        );
    }
    for (name, value) in known {
        assert_eq!(
            parsed[name].as_str(),
            Some(value.as_str()),
            "{}: {name}",
            sim.id
        );
    }
}

/// `csv`: a CSV reader gives `""` and an empty field alike, so empty strings
/// compare as null there (the file itself keeps them apart, see the sink's tests).
fn compare(rows: Vec<Row>, ids: &[String], csv: bool) {
    assert_eq!(rows.len(), ids.len(), "one row per ID");
    let mut seen = HashSet::new();
    let mut awkward_money = 0;
    let mut all_null = 0;
    for mut row in rows {
        let id = row["id"].clone().unwrap();
        assert!(seen.insert(id.clone()), "{id} written twice");
        let sim = generation(&id);
        check_extra(&sim, row.remove("extra").unwrap().as_ref());
        assert!(row.remove("run_id").unwrap().is_some());
        assert!(row.remove("exported_at").unwrap().is_some());
        let mut want = expected(&sim);
        if csv {
            want.values_mut()
                .filter(|v| v.as_deref() == Some(""))
                .for_each(|v| *v = None);
        }
        assert_eq!(row, want, "{id}");
        if matches!(
            sim.total_cost.as_deref(),
            Some("3e-7" | "0.30000000000000004" | "1.2345678901234567")
        ) {
            awkward_money += 1;
        }
        if sim.provider_name.is_none()
            && sim.tokens_prompt.is_none()
            && sim.latency.is_none()
            && sim.streamed.is_none()
        {
            all_null += 1;
        }
    }
    assert!(awkward_money > 0, "the sample holds awkward money values");
    assert!(all_null > 0, "the sample holds all-null records");
}

#[tokio::test]
async fn parquet_round_trip_equals_the_simulator_field_by_field() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(1000, Duration::from_secs(86_400 * 3), "pq");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Parquet);
    settings.output.max_rows_per_file = 300;
    let report = export(&settings).await;
    assert_eq!((report.exit_code, report.counts.exported), (0, 1000));

    let files = data_files(&out, ".parquet");
    assert!(files.len() >= 4, "rotation at 300 rows: {files:?}");
    let schema = read_parquet(&files[0])[0].schema();
    let ty = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(ty("total_cost"), DataType::Decimal128(38, 18));
    assert_eq!(
        ty("created_at"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(ty("tokens_prompt"), DataType::Int64);
    assert_eq!(ty("extra"), DataType::Utf8);
    compare(parquet_rows(&out), &ids, false);
    assert_eq!(sim.stats().duplicate_ok, 0);
}

#[tokio::test]
async fn csv_round_trip_equals_the_simulator_and_keeps_money_exact() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(1000, Duration::from_secs(86_400), "csv");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let report = export(&settings(&sim, &input, &out, Format::Csv)).await;
    assert_eq!((report.exit_code, report.counts.exported), (0, 1000));
    let rows = csv_rows(&out);
    // Money as plain decimal text, exactly.
    for row in &rows {
        let sim = generation(row["id"].as_deref().unwrap());
        match sim.total_cost.as_deref() {
            Some("3e-7") => assert_eq!(row["total_cost"].as_deref(), Some("0.0000003")),
            Some("0.30000000000000004") => {
                assert_eq!(row["total_cost"].as_deref(), Some("0.30000000000000004"))
            }
            _ => {}
        }
        assert!(
            !row["total_cost"]
                .as_deref()
                .unwrap_or("")
                .contains(['e', 'E'])
        );
    }
    compare(rows, &ids, true);
}

#[tokio::test]
async fn manifest_lists_every_file_with_its_hash_and_exact_totals() {
    use sha2::{Digest, Sha256};
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(400, Duration::from_secs(86_400 * 2), "mf");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Parquet);
    settings.output.max_rows_per_file = 150;
    let report = export(&settings).await;
    let manifest = genledger::export::manifest::read(report.manifest.as_ref().unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), data_files(&out, ".parquet").len());
    let mut rows = 0;
    for f in files {
        let path = out.join(f["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(f["bytes"].as_u64().unwrap(), bytes.len() as u64);
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(&bytes))
        );
        let in_file: usize = read_parquet(&path).iter().map(|b| b.num_rows()).sum();
        assert_eq!(f["rows"].as_u64().unwrap(), in_file as u64);
        rows += in_file;
    }
    assert_eq!(rows, 400);
    let mut total = Money::ZERO;
    for id in &ids {
        total = total
            .checked_add(Money::parse(generation(id).total_cost.as_deref().unwrap()).unwrap())
            .unwrap();
    }
    assert_eq!(
        manifest["totals"]["total_cost"].as_str().unwrap(),
        total.to_string()
    );
    assert_eq!(manifest["counts"]["exported"].as_u64(), Some(400));
}
