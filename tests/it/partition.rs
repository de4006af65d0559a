//! Bounded memory whatever the input: rows of large prompts cut Parquet row
//! groups by bytes, not only by rows.

use std::fs::File;
use std::time::Duration;

use genledger::config::Format;
use genledger::simulator::SimConfig;
use genledger::sink::ROW_GROUP_BYTES;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::crash::check_table_exactly_once;
use crate::support::*;

#[tokio::test]
async fn large_prompts_cut_row_groups_by_bytes() {
    const PROMPT: usize = 512 << 10;
    let sim = start_sim(SimConfig {
        content_prompt_bytes: Some(PROMPT),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(48, Duration::from_secs(86_400 * 2), "big");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Parquet);
    settings.content = true;
    let report = export(&settings).await;
    assert_eq!(report.counts.content_exported, 48);

    let files = table_files(&out, "content", ".parquet");
    assert_eq!(files.len(), 1, "one day, one file: {files:?}");
    let reader = SerializedFileReader::new(File::open(&files[0]).unwrap()).unwrap();
    let groups = reader.metadata().row_groups();
    // A row group is cut once its rows reach ROW_GROUP_BYTES: 16 prompts.
    let per_group = ROW_GROUP_BYTES / PROMPT;
    let rows: Vec<i64> = groups.iter().map(|g| g.num_rows()).collect();
    assert_eq!(rows, [per_group as i64; 3], "rows per row group");
    for group in groups {
        assert!(
            group.total_byte_size() as usize <= ROW_GROUP_BYTES + PROMPT,
            "{} bytes in a row group",
            group.total_byte_size()
        );
    }
    check_table_exactly_once(&out, "content", &ids);
    // Metadata rows are small: one row group of all 48.
    let metadata = table_files(&out, "generations", ".parquet");
    let reader = SerializedFileReader::new(File::open(&metadata[0]).unwrap()).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 1);
}
