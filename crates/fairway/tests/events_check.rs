//! `fairway events check` through the real binary: an event a module cannot decode is reported by
//! type and position and fails the command; a log that decodes passes it.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use dcb_core::{Event, EventStore};
use dcb_embedded::EmbeddedStore;

fn bin() -> std::path::PathBuf {
    std::env::var_os("FAIRWAY_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_fairway")))
}

async fn write(dir: &Path, events: Vec<Event>) {
    let store = EmbeddedStore::open(dir.join("store")).unwrap();
    for e in events {
        store.append(vec![e], vec![]).await.unwrap();
    }
    // Dropping the last handle joins the writer and releases the data directory.
    drop(store);
}

fn list_created(id: &str, data: &str) -> Event {
    Event::new("ListCreated", data.as_bytes().to_vec()).tags([format!("list:{id}")])
}

fn check(dir: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(["events", "check", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_reports_each_undecodable_event_by_type_and_position() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        vec![
            list_created("groceries", r#"{"listId":"groceries","name":"Groceries"}"#),
            // An old shape: the name was called "title".
            list_created("chores", r#"{"listId":"chores","title":"Chores"}"#),
            Event::new("SomethingNobodyReads", b"{}".to_vec()),
        ],
    )
    .await;
    let (ok, stdout, stderr) = check(dir.path(), &[]);
    assert!(
        !ok,
        "a failing event must fail the command:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("FAILED position 2 ListCreated (version 1)"),
        "{stdout}"
    );
    assert!(stdout.contains("missing field `name`"), "{stdout}");
    assert!(!stdout.contains("FAILED position 1 "), "{stdout}");
    assert!(
        stdout.contains("SomethingNobodyReads: 1 events, 0 failed (no module reads it)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 3 events"), "{stdout}");

    let (ok, stdout, _) = check(dir.path(), &["--json"]);
    assert!(!ok);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["events"], 3);
    assert_eq!(report["failed"], 1);
    assert_eq!(report["failures"][0]["position"], "2");
    assert_eq!(report["failures"][0]["event_type"], "ListCreated");
}

#[tokio::test]
async fn a_log_that_decodes_passes() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        vec![list_created(
            "groceries",
            r#"{"listId":"groceries","name":"Groceries"}"#,
        )],
    )
    .await;
    let (ok, stdout, stderr) = check(dir.path(), &[]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("ok: all 1 events"), "{stdout}");
}
