//! The probe behind the embedded store's event layout (docs/BENCHMARKS.md, "Event storage:
//! the options measured"): the same events stored three ways, each in a process of its own.
//!
//! ```text
//! cargo run --release -p dcb-embedded --example layout_probe -- fjall 1000000
//! cargo run --release -p dcb-embedded --example layout_probe -- fjall-kvsep 1000000
//! cargo run --release -p dcb-embedded --example layout_probe -- segments 1000000
//! ```
//!
//! - `fjall`: events in a fjall keyspace (key: position, value: codec record), each 1 000-event
//!   batch committed with `PersistMode::SyncData`: schema version 1 of the embedded store.
//! - `fjall-kvsep`: the same with fjall's key-value separation (values of 64 bytes and more in
//!   blob files, out of the LSM).
//! - `segments`: the embedded store itself (its segment log, plus the indexes it maintains).
//!
//! Each prints one line: bytes written to the disk per event while populating (`write_bytes`
//! of /proc/self/io, every thread of the process, memtables flushed), tag reads (100 events per
//! tag, sorted positions read one by one for fjall, one store read for the segments), a full scan
//! decoding every event, and the resident memory after reopening and reading. Not a test: a probe
//! to rerun when the layout is questioned.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Instant;

use dcb_core::codec::{decode_event_bytes, encode_event};
use dcb_core::{Bytes, Event, EventStore, Query, ReadOptions};
use dcb_embedded::{EmbeddedStore, keys};
use fjall::{Database, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use futures::StreamExt;

const BATCH: u64 = 1000;
const TAG_READS: usize = 500;

fn proc_io(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    s.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_prefix(':')?
                .trim()
                .parse()
                .ok()
        })
        .or_else(|| {
            s.lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:"))?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn event(p: u64, tags: u64) -> Event {
    let mut data = format!("{{\"n\":{p},\"pad\":\"").into_bytes();
    data.resize(98, b'x');
    data.extend_from_slice(b"\"}");
    // A multiplicative hash spreads each tag's events over the whole log.
    let tag = p.wrapping_mul(0x9E37_79B9_7F4A_7C15) % tags;
    Event::new("Probed", data).tag(format!("t:{tag}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = args.get(1).map(String::as_str).unwrap_or("segments");
    let events: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let tags = (events / 100).max(1);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let written_before = proc_io("write_bytes");
    let t = Instant::now();
    let mut by_tag: HashMap<String, Vec<u64>> = HashMap::new();
    match option {
        "fjall" | "fjall-kvsep" => {
            let db = Database::builder(dir.path()).open().unwrap();
            let kvsep = option == "fjall-kvsep";
            let ks = db
                .keyspace(keys::EVENTS, || {
                    KeyspaceCreateOptions::default().with_kv_separation(
                        kvsep.then(|| KvSeparationOptions::default().separation_threshold(64)),
                    )
                })
                .unwrap();
            let mut p = 1;
            while p <= events {
                let mut batch = db.batch().durability(Some(PersistMode::SyncData));
                for q in p..(p + BATCH).min(events + 1) {
                    let e = event(q, tags);
                    by_tag.entry(e.tags[0].to_string()).or_default().push(q);
                    batch.insert(&ks, keys::event_key(q), encode_event(&e, 0, 1));
                }
                batch.commit().unwrap();
                p += BATCH;
            }
            ks.rotate_memtable_and_wait().unwrap();
        }
        _ => {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            rt.block_on(async {
                let mut p = 1;
                while p <= events {
                    let batch: Vec<Event> = (p..(p + BATCH).min(events + 1))
                        .map(|q| event(q, tags))
                        .collect();
                    for (i, e) in batch.iter().enumerate() {
                        by_tag
                            .entry(e.tags[0].to_string())
                            .or_default()
                            .push(p + i as u64);
                    }
                    store.append(batch, vec![]).await.unwrap();
                    p += BATCH;
                }
            });
        }
    }
    let populate_s = t.elapsed().as_secs_f64();
    let written = proc_io("write_bytes") - written_before;
    let mut names: Vec<&String> = by_tag.keys().collect();
    names.sort();
    let probe: Vec<&String> = names
        .iter()
        .step_by((names.len() / TAG_READS).max(1))
        .copied()
        .collect();
    let (tag_s, tag_events, scan_s, scanned) = match option {
        "fjall" | "fjall-kvsep" => {
            let db = Database::builder(dir.path()).open().unwrap();
            let ks = db
                .keyspace(keys::EVENTS, KeyspaceCreateOptions::default)
                .unwrap();
            let t = Instant::now();
            let mut n = 0usize;
            for tag in &probe {
                for &p in &by_tag[*tag] {
                    let v = ks.get(keys::event_key(p)).unwrap().unwrap();
                    let se = decode_event_bytes(&Bytes::from(v)).unwrap();
                    n += usize::from(!se.event.tags.is_empty());
                }
            }
            let tag_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut scanned = 0u64;
            for kv in ks.iter() {
                let (_, v) = kv.into_inner().unwrap();
                let se = decode_event_bytes(&Bytes::from(v)).unwrap();
                scanned += u64::from(!se.event.event_type.is_empty());
            }
            (tag_s, n, t.elapsed().as_secs_f64(), scanned)
        }
        _ => rt.block_on(async {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            let t = Instant::now();
            let mut n = 0usize;
            for tag in &probe {
                let r = store
                    .read(Query::tagged(tag.as_str()), ReadOptions::new())
                    .await
                    .unwrap()
                    .collect_all()
                    .await
                    .unwrap();
                n += r.len();
            }
            let tag_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut s = store.read(Query::All, ReadOptions::new()).await.unwrap();
            let mut scanned = 0u64;
            while let Some(e) = s.next().await {
                scanned += u64::from(!e.unwrap().event.event_type.is_empty());
            }
            (tag_s, n, t.elapsed().as_secs_f64(), scanned)
        }),
    };
    assert_eq!(scanned, events);
    println!(
        "{option:12} events {events}: populate {populate_s:.1} s, written {:.1} B/event, tag reads {:.0} us per 100 events ({} reads), full scan {:.2} M events/s, RSS {} KiB",
        written as f64 / events as f64,
        tag_s * 1e6 / (tag_events as f64 / 100.0),
        probe.len(),
        scanned as f64 / scan_s / 1e6,
        rss_kib()
    );
}
