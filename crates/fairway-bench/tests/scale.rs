//! `fairway-bench --scale` end to end at a tiny size: child processes per phase and store, one
//! table per size with ratios against Tephra, JSON lines, and no data directory left behind.

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn scale_mode_prints_a_table_and_json_per_size_and_deletes_its_data() {
    let parent = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fairway-bench"))
        .args(["--scale", "--sizes", "2k,2500", "--rounds", "2", "--dir"])
        .arg(parent.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    for size in ["scale 2k events", "scale 2500 events"] {
        let header = stdout
            .lines()
            .find(|l| l.starts_with(size))
            .unwrap_or_else(|| panic!("no table for {size}:\n{stdout}"));
        assert!(
            header.contains("fairway") && header.contains("tephra") && header.contains("vs tephra"),
            "{header}"
        );
    }
    for figure in [
        "populate (1000-event appends)",
        "bytes written per event (write_bytes)",
        "RSS after a fresh open",
        "open time",
        "tag read p50",
        "tag read p99",
        "hot tag read",
        "full scan",
    ] {
        assert!(stdout.contains(figure), "{figure} missing:\n{stdout}");
    }
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with("{\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scan = lines
        .iter()
        .find(|v| {
            v["field"] == "scan_events_per_s" && v["store"] == "fairway" && v["events"] == 2500
        })
        .unwrap_or_else(|| panic!("no scan line:\n{stdout}"));
    assert_eq!(scan["per_round"].as_array().map(Vec::len), Some(2));
    assert!(scan["ratio_vs_tephra"].as_f64().unwrap() > 0.0, "{scan}");
    assert!(scan["median"].as_f64().unwrap() > 0.0, "{scan}");
    // Every round's data directory is gone.
    let left: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bad_sizes_are_refused_before_any_work() {
    let out = Command::new(env!("CARGO_BIN_EXE_fairway-bench"))
        .args(["--scale", "--sizes", "lots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lots"));
}
