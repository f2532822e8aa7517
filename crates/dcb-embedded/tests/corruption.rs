//! Flipped bytes in any data file are reported as an error at open or read, never a panic and
//! never silently different data.
#![allow(clippy::unwrap_used)]

use dcb_core::{Event, EventStore, Query, ReadOptions, SequencedEvent};
use dcb_embedded::EmbeddedStore;
use futures::StreamExt;

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::metadata(&p).unwrap().len() > 64 && !p.ends_with("lock") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every event, read twice: one at a time through the stream, and in batches (`collect_all`).
/// The two must agree, on the events and on the error, whatever the flip hit.
async fn read_all(dir: &std::path::Path) -> Result<Vec<SequencedEvent>, String> {
    let s = EmbeddedStore::open(dir).map_err(|e| e.to_string())?;
    let mut one_by_one = s
        .read(Query::All, ReadOptions::new())
        .await
        .map_err(|e| e.to_string())?;
    let mut streamed = Vec::new();
    let mut stream_error = None;
    while let Some(item) = one_by_one.next().await {
        match item {
            Ok(e) => streamed.push(e),
            Err(e) => {
                stream_error = Some(e.to_string());
                break;
            }
        }
    }
    let r = s
        .read(Query::All, ReadOptions::new())
        .await
        .map_err(|e| e.to_string())?;
    let batched = r.collect_all().await.map_err(|e| e.to_string());
    match (&batched, stream_error) {
        (Ok(all), None) => assert_eq!(all, &streamed, "batches and the stream differ"),
        (Err(b), Some(s)) => assert_eq!(b, &s, "batches and the stream fail differently"),
        (b, s) => panic!("batches and the stream disagree: {b:?} against {s:?}"),
    }
    batched
}

#[tokio::test]
async fn flipped_bytes_are_an_error_or_harmless_never_a_panic() {
    let original = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open(original.path()).unwrap();
        for i in 0..200 {
            let e = Event::new(
                "Written",
                format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(100)).into_bytes(),
            )
            .tag(format!("n:{i}"));
            s.append(vec![e], vec![]).await.unwrap();
            if i == 99 {
                // Half the events in a disk segment, half only in the journal.
                s.flush().unwrap();
            }
        }
    }
    let expected = read_all(original.path()).await.unwrap();
    assert_eq!(expected.len(), 200);
    // An unmodified copy opens and reads back exactly (so errors below come from the flips).
    let pristine = tempfile::tempdir().unwrap();
    copy_small(original.path(), pristine.path());
    assert_eq!(read_all(pristine.path()).await.unwrap(), expected);
    let mut errors = 0;
    let mut harmless = 0;
    let mut tried = 0;
    for (fi, file) in files(original.path()).iter().enumerate() {
        let len = std::fs::metadata(file).unwrap().len() as usize;
        for k in 1..8usize {
            let at = len * k / 8;
            let copy = tempfile::tempdir().unwrap();
            for f in files(original.path()) {
                let rel = f.strip_prefix(original.path()).unwrap();
                let to = copy.path().join(rel);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&f, &to).unwrap();
            }
            // Small files (configs, manifests) too.
            copy_small(original.path(), copy.path());
            let target = copy
                .path()
                .join(file.strip_prefix(original.path()).unwrap());
            let mut bytes = std::fs::read(&target).unwrap();
            bytes[at] ^= 0xA5;
            std::fs::write(&target, &bytes).unwrap();
            tried += 1;
            match read_all(copy.path()).await {
                Err(e) => {
                    if errors == 0 {
                        eprintln!("corruption: first error seen: {e}");
                    }
                    errors += 1
                }
                Ok(events) => {
                    // A flip in the journal's last batch may drop that (torn) batch, as after a
                    // crash mid-write; anything else must read back exactly.
                    let ok = events == expected
                        || (events.len() == expected.len() - 1 && expected.starts_with(&events));
                    assert!(
                        ok,
                        "file #{fi} {} byte {at}: data changed silently",
                        file.display()
                    );
                    harmless += 1;
                }
            }
        }
    }
    eprintln!("corruption: {tried} flips, {errors} reported as errors, {harmless} harmless");
    assert!(tried > 0);
}

fn copy_small(from: &std::path::Path, to: &std::path::Path) {
    let mut stack = vec![from.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let dest = to.join(p.strip_prefix(from).unwrap());
            if p.is_dir() {
                std::fs::create_dir_all(&dest).unwrap();
                stack.push(p);
            } else if !dest.exists() {
                std::fs::copy(&p, &dest).unwrap();
            }
        }
    }
}
