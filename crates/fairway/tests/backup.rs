//! `fairway backup` against a running server (through its console) under concurrent writes,
//! `fairway backup --verify`, and `fairway restore` into a new data directory, over the real
//! binary: the restored store holds exactly the original events up to the backup's head (every
//! write acknowledged before the backup started, none acknowledged after it ended), its
//! consumers' checkpoints are at or below that head, and a server runs on it.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use support::{Server, data_dir, fairway};

/// The event lines and the header of an export of `dir`'s store.
fn export_of(dir: &Path, out: &Path) -> (Value, Vec<String>) {
    let o = fairway(dir, &["events", "export", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(out).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let events = text
        .lines()
        .filter(|l| l.starts_with("{\"position\":"))
        .map(str::to_owned)
        .collect();
    (header, events)
}

fn position(line: &str) -> u64 {
    let v: Value = serde_json::from_str(line).unwrap();
    v["position"].as_str().unwrap().parse().unwrap()
}

#[test]
fn backup_of_a_running_server_under_load_restores_exactly_up_to_its_head() {
    let dir = data_dir();
    let server = Server::start(dir.path());
    let console = server
        .startup_line
        .split("console: http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    for n in 0..50 {
        let r = server.post_json(&format!("/api/lists/before{n}"), &json!({"name": "x"}));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let backups = data_dir();
    let dest = backups.path().join("b1");
    let stop = AtomicBool::new(false);
    let (acked, report) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut acked = Vec::new();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                let body = json!({"name": "during"}).to_string();
                let r = server
                    .try_request(
                        "POST",
                        &format!("/api/lists/during{n}"),
                        &[("content-type", "application/json")],
                        Some(body.as_bytes()),
                    )
                    .unwrap();
                assert_eq!(r.status, 201, "{}", r.text());
                acked.push(n);
                n += 1;
            }
            acked
        });
        let o = fairway(
            dir.path(),
            &["backup", dest.to_str().unwrap(), "--console", &console],
        );
        stop.store(true, Ordering::Relaxed);
        let acked = writer.join().unwrap();
        assert!(
            o.status.success(),
            "backup failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("asking its console"), "{stderr}");
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        (acked, report)
    });
    for n in 0..5 {
        let r = server.post_json(&format!("/api/lists/after{n}"), &json!({"name": "x"}));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    server.stop();
    let head: u64 = report["head"].as_str().unwrap().parse().unwrap();
    println!(
        "backup report: {report}; {} writes acknowledged during it",
        acked.len()
    );
    assert_eq!(report["events"].as_u64(), Some(head));

    // The backup checks against its manifest; a changed manifest does not.
    let o = fairway(dir.path(), &["backup", "--verify", dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Restore into a new data directory; a second restore over it is refused.
    let restored = data_dir();
    let o = fairway(restored.path(), &["restore", dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = fairway(restored.path(), &["restore", dest.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holds a store already"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let exports = data_dir();
    let (_, original) = export_of(dir.path(), &exports.path().join("original.jsonl"));
    let (header, copy) = export_of(restored.path(), &exports.path().join("restored.jsonl"));
    let expected: Vec<String> = original
        .iter()
        .filter(|l| position(l) <= head)
        .cloned()
        .collect();
    assert_eq!(copy.len(), expected.len());
    assert!(
        copy == expected,
        "the restored events differ from the original up to {head}"
    );
    assert!(
        original.len() > copy.len(),
        "writes after the backup exist in the original"
    );
    let text = copy.join("\n");
    for n in 0..50 {
        assert!(
            text.contains(&format!("\"list:before{n}\"")),
            "before{n} is missing"
        );
    }
    for n in 0..5 {
        assert!(
            !text.contains(&format!("\"list:after{n}\"")),
            "after{n} is in the copy"
        );
    }
    let checkpoints = header["checkpoints"].as_object().unwrap();
    assert!(!checkpoints.is_empty(), "{header}");
    for (consumer, p) in checkpoints {
        let p: u64 = p.as_str().unwrap().parse().unwrap();
        assert!(
            p <= head,
            "{consumer} at {p}, past the backup's head {head}"
        );
    }

    // The restored data directory serves.
    let server = Server::start(restored.path());
    let r = server.get("/api/lists/before7");
    assert_eq!(r.status, 200, "{}", r.text());
    server.stop();

    // Damage the manifest: verify refuses.
    let manifest = dest.join("fairway-backup.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["crc32"] = json!("00000000");
    std::fs::write(&manifest, m.to_string()).unwrap();
    let o = fairway(dir.path(), &["backup", "--verify", dest.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not match its manifest"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn export_and_import_move_a_data_directory_and_refuse_what_they_must() {
    let dir = data_dir();
    let server = Server::start(dir.path());
    for n in 0..30 {
        let r = server.post_json(&format!("/api/lists/l{n}"), &json!({"name": "x"}));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // Let the view catch up, so that the export carries a checkpoint and state.
    let r = server.get("/api/lists/l29");
    assert_eq!(r.status, 200, "{}", r.text());
    server.stop();
    let files = data_dir();
    let file = files.path().join("log.jsonl");
    let (header, events) = export_of(dir.path(), &file);
    assert_eq!(events.len(), 30);
    assert!(
        header["checkpoints"]
            .as_object()
            .is_some_and(|c| !c.is_empty()),
        "{header}"
    );

    let moved = data_dir();
    let o = fairway(moved.path(), &["events", "import", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("every event kept its position"), "{stderr}");
    let again = files.path().join("again.jsonl");
    export_of(moved.path(), &again);
    assert!(
        std::fs::read(&file).unwrap() == std::fs::read(&again).unwrap(),
        "the moved store does not export what the original did"
    );
    // A second import into the same store is refused, and changes nothing.
    let o = fairway(moved.path(), &["events", "import", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    export_of(moved.path(), &again);
    assert!(std::fs::read(&file).unwrap() == std::fs::read(&again).unwrap());
    // A truncated export is refused and writes nothing.
    let bytes = std::fs::read(&file).unwrap();
    let cut = files.path().join("cut.jsonl");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let empty = data_dir();
    let o = fairway(empty.path(), &["events", "import", cut.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("incomplete or damaged"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (header, events) = export_of(empty.path(), &files.path().join("empty.jsonl"));
    assert!(events.is_empty());
    assert_eq!(header["head"], Value::Null);
    assert_eq!(header["checkpoints"], json!({}));
}
