//! Crash consistency: a child process appends in a loop and prints each acknowledgement; the
//! parent kills it with SIGKILL at random moments, reopens the store and checks that every
//! acknowledged batch is present in full, no batch is partially present, positions strictly
//! increase, and the store keeps accepting appends. One writer's appends move a consumer
//! checkpoint in the same atomic write (tracking): after every kill the checkpoint is exactly the
//! one of the last such batch in the log. Segments are small, so kills also land around rolls.
//!
//! The child is this same test binary, re-run with `DCB_CRASH_CHILD` set (the file has its own
//! `main`: `harness = false` in Cargo.toml).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dcb_core::{
    AppendCondition, AppendRequest, Event, EventStore, Position, Query, ReadOptions, Tracking, Uuid,
};
use dcb_embedded::EmbeddedStore;
use rand::Rng;

const KILLS: usize = 24;
const WRITERS: u64 = 4;
/// Only a guard against a hung child; the test waits for the first acknowledgement itself.
const FIRST_ACK_DEADLINE: Duration = Duration::from_secs(120);

fn batch_events(batch: u64, len: u64) -> Vec<Event> {
    (0..len)
        .map(|i| {
            Event::new(
                "Crashed",
                format!("{{\"batch\":{batch},\"i\":{i}}}").into_bytes(),
            )
            .tag(format!("batch:{batch}"))
            .tag(format!("writer:{}", batch % WRITERS))
            .with_id(Uuid::from_u64_pair(batch, i))
        })
        .collect()
}

/// The consumer whose checkpoint writer 0's appends move.
const TRACKER: &str = "tracker";

fn batch_len(batch: u64) -> u64 {
    1 + batch % 5
}

fn main() {
    match std::env::var("DCB_CRASH_CHILD") {
        Ok(dir) => crash_child(dir),
        Err(_) => {
            acknowledged_batches_survive_sigkill();
            println!("crash_consistency: 1 passed, 0 failed");
        }
    }
}

/// The child: WRITERS tasks append batches (half of them conditional; odd writers with
/// `append_blocking`) until killed.
fn crash_child(dir: String) {
    let first: u64 = std::env::var("DCB_CRASH_FIRST_BATCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Frequent index snapshots, so that kills also land around snapshot writes and reopens
        // start from a snapshot older than the last acknowledged append.
        let options = dcb_embedded::Options::default()
            .index_snapshot_every(64)
            .segment_bytes(64 * 1024);
        let store = Arc::new(EmbeddedStore::open_with(&dir, options).unwrap());
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let mut batch = first + w;
                loop {
                    let events = batch_events(batch, batch_len(batch));
                    let conditions = if batch.is_multiple_of(2) {
                        // Read this writer's tag, append on condition nothing new appeared.
                        let q = Query::tagged(format!("writer:{w}"));
                        let head = store
                            .read(q.clone(), ReadOptions::new().backwards().limit(1))
                            .await
                            .unwrap()
                            .head();
                        vec![
                            AppendCondition::new(q, head),
                            AppendCondition::none_match(Query::tagged(format!("batch:{batch}"))),
                        ]
                    } else {
                        vec![]
                    };
                    // Writer 0 tracks: its checkpoint moves with its events.
                    let tracking = (w == 0).then(|| Tracking {
                        consumer: TRACKER.into(),
                        position: Position::from_u64(batch + 1),
                    });
                    let request = AppendRequest {
                        events,
                        conditions,
                        tracking,
                    };
                    // Odd writers append blocking (committing on their own thread when the
                    // writer is idle), the others through the queue: kills land in both.
                    let r = if w % 2 == 1 {
                        tokio::task::block_in_place(|| store.append_blocking(request)).unwrap()
                    } else {
                        store.append_request(request).await.unwrap()
                    };
                    let line = format!("ACK {batch} {} {}\n", r.positions[0], r.positions.len());
                    let mut o = out.lock().unwrap();
                    o.write_all(line.as_bytes()).unwrap();
                    o.flush().unwrap();
                    drop(o);
                    batch += WRITERS;
                }
            }));
        }
        // The writers loop until the parent kills this process; a writer that fails ends it.
        let (first_done, _, _) = futures::future::select_all(tasks).await;
        panic!("a writer stopped: {first_done:?}");
    });
}

fn acknowledged_batches_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut acked: BTreeMap<u64, (u128, u64)> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..KILLS {
        let first = (round as u64) * 1_000_000;
        let mut child = Command::new(&exe)
            .env("DCB_CRASH_CHILD", dir.path())
            .env("DCB_CRASH_FIRST_BATCH", first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The reader forwards each ACK as it arrives, so the parent can wait for the first one.
        let (tx, rx) = std::sync::mpsc::channel::<(u64, u128, u64)>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.len() == 4 && parts[0] == "ACK" {
                    let ack = (
                        parts[1].parse::<u64>().unwrap(),
                        parts[2].parse::<u128>().unwrap(),
                        parts[3].parse::<u64>().unwrap(),
                    );
                    if tx.send(ack).is_err() {
                        break;
                    }
                }
            }
        });
        // Wait for the child's first acknowledgement (the deadline only guards against a hang:
        // a debug child on a loaded machine may take long to open the store), then let it run
        // a random while more so that kills land at every stage of a commit.
        let first_ack = rx.recv_timeout(FIRST_ACK_DEADLINE);
        if first_ack.is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("round {round}: the child acknowledged nothing within {FIRST_ACK_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let lines: Vec<_> = first_ack.into_iter().chain(rx.try_iter()).collect();
        for (batch, pos, len) in lines {
            acked.insert(batch, (pos, len));
        }
        verify(dir.path(), &acked, round);
    }
    eprintln!(
        "crash test: {KILLS} SIGKILLs, {} acknowledged batches verified, {:.1}s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
}

fn verify(dir: &std::path::Path, acked: &BTreeMap<u64, (u128, u64)>, round: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir).unwrap();
        let all = store
            .read(Query::All, ReadOptions::new())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        let mut seen: BTreeMap<u64, Vec<(u128, u64)>> = BTreeMap::new();
        let mut last = 0u128;
        for e in &all {
            assert!(
                e.position.get() > last,
                "round {round}: positions not strictly increasing"
            );
            last = e.position.get();
            let v: serde_like::Body = serde_like::parse(&e.event.data);
            seen.entry(v.batch)
                .or_default()
                .push((e.position.get(), v.i));
        }
        for (batch, members) in &seen {
            if *batch == u64::MAX {
                continue;
            }
            let len = batch_len(*batch);
            assert_eq!(
                members.len() as u64,
                len,
                "round {round}: batch {batch} is partially present"
            );
            for (k, (p, i)) in members.iter().enumerate() {
                assert_eq!(*i, k as u64, "round {round}: batch {batch} out of order");
                assert_eq!(
                    *p,
                    members[0].0 + k as u128,
                    "round {round}: batch {batch} not contiguous"
                );
            }
        }
        // The checkpoint is the one of the last tracked batch present: never ahead of the events,
        // never behind them.
        let last_tracked = seen
            .iter()
            .filter(|(b, _)| **b != u64::MAX && *b % WRITERS == 0)
            .max_by_key(|(_, members)| members[0].0)
            .map(|(b, _)| Position::from_u64(b + 1));
        assert_eq!(
            store.checkpoint(TRACKER).await.unwrap(),
            last_tracked,
            "round {round}: the tracked checkpoint does not match the events"
        );
        for (batch, (pos, len)) in acked {
            let members = seen
                .get(batch)
                .unwrap_or_else(|| panic!("round {round}: acknowledged batch {batch} lost"));
            assert_eq!(members[0].0, *pos, "round {round}: batch {batch} moved");
            assert_eq!(members.len() as u64, *len);
        }
        // Idempotent retry of an acknowledged batch replays it; new appends still work.
        if let Some((batch, (pos, _))) = acked.iter().next_back() {
            let r = store
                .append(batch_events(*batch, batch_len(*batch)), vec![])
                .await
                .unwrap();
            assert!(r.replayed);
            assert_eq!(r.positions[0].get(), *pos);
        }
        let probe = Event::new(
            "Probe",
            b"{\"batch\":18446744073709551615,\"i\":0}".to_vec(),
        )
        .tag(format!("probe:{round}"));
        let r = store
            .append(
                vec![probe],
                vec![AppendCondition::none_match(Query::tagged(format!(
                    "probe:{round}"
                )))],
            )
            .await
            .unwrap();
        assert!(r.positions[0].get() > last);
    });
}

/// A tiny parser for the `{"batch":N,"i":M}` bodies (keeps serde_json out of this test).
mod serde_like {
    pub struct Body {
        pub batch: u64,
        pub i: u64,
    }
    pub fn parse(data: &[u8]) -> Body {
        let s = std::str::from_utf8(data).unwrap();
        let num = |key: &str| -> u64 {
            let start = s.find(key).unwrap() + key.len();
            s[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap()
        };
        Body {
            batch: num("\"batch\":"),
            i: num("\"i\":"),
        }
    }
}
