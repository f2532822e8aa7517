//! Export and import keep memory flat: during a ~55 MB export and import the process's peak
//! resident memory grows by a few megabytes, not with the log. The stores are synthetic (events
//! are generated as they are read and dropped as they are appended), so only the transfer's own
//! memory is measured: the peak RSS (`VmHWM`, reset through `/proc/self/clear_refs`) against the
//! resident size before. Linux only, like CI.
#![allow(clippy::unwrap_used)]

use std::io::BufReader;
use std::sync::Mutex;

use async_trait::async_trait;
use dcb_core::{
    AppendRequest, Appended, ConsumerSnapshot, Event, EventStore, Position, Query, ReadOptions,
    ReadStream, SequencedEvent, StateCommit, StoreError, Subscription,
};
use dcb_transfer::{ImportOptions, export, import_from};
use futures::StreamExt;

const N: u64 = 50_000;
/// The payload of every event: about 1 KB of JSON.
fn event(i: u64) -> Event {
    Event::new(
        "Generated",
        format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(1000)).into_bytes(),
    )
    .tag(format!("k:{}", i / 100))
}

/// A store whose `n` events are made up on read, and which counts and drops what is appended.
struct Synthetic {
    n: u64,
    appended: Mutex<u64>,
}

#[async_trait]
impl EventStore for Synthetic {
    async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let mut count = self.appended.lock().unwrap();
        let first = *count + 1;
        *count += request.events.len() as u64;
        Ok(Appended {
            positions: (first..=*count).map(Position::from_u64).collect(),
            replayed: false,
        })
    }
    async fn read(&self, _query: Query, _options: ReadOptions) -> Result<ReadStream, StoreError> {
        let head = (self.n > 0).then(|| Position::from_u64(self.n));
        let events = futures::stream::iter(1..=self.n).map(|i| {
            Ok(SequencedEvent {
                position: Position::from_u64(i),
                event: event(i),
            })
        });
        Ok(ReadStream::new(head, events.boxed()))
    }
    async fn head(&self) -> Result<Option<Position>, StoreError> {
        let appended = *self.appended.lock().unwrap();
        Ok((self.n.max(appended) > 0).then(|| Position::from_u64(self.n.max(appended))))
    }
    async fn wait_for_head(
        &self,
        _after: Option<Position>,
    ) -> Result<Option<Position>, StoreError> {
        self.head().await
    }
    fn subscribe(&self, _query: Query, _after: Option<Position>) -> Subscription {
        futures::stream::empty().boxed()
    }
    async fn checkpoint(&self, _consumer: &str) -> Result<Option<Position>, StoreError> {
        Ok(None)
    }
    async fn commit_state(&self, _commit: StateCommit) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get_state(&self, _consumer: &str, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    async fn scan_state(
        &self,
        _consumer: &str,
        _prefix: &[u8],
        _after: Option<&[u8]>,
        _limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        Ok(Vec::new())
    }
    async fn reset_consumer(&self, _consumer: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn consumer_snapshot(&self) -> Result<ConsumerSnapshot, StoreError> {
        Ok(ConsumerSnapshot {
            head: self.head().await?,
            checkpoints: Default::default(),
            state: futures::stream::empty().boxed(),
        })
    }
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets the peak and returns the resident size now, in KiB.
fn start_measuring() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    status_kb("VmRSS:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.jsonl");
    let source = Synthetic {
        n: N,
        appended: Mutex::new(0),
    };
    let before = start_measuring();
    let summary = export(&source, std::fs::File::create(&path).unwrap(), &mut |_| {})
        .await
        .unwrap();
    let export_growth = status_kb("VmHWM:").saturating_sub(before);
    assert_eq!(summary.events, N);
    let size_kb = summary.bytes / 1024;
    println!("export: {size_kb} KiB written, peak RSS grew by {export_growth} KiB");

    let target = Synthetic {
        n: 0,
        appended: Mutex::new(0),
    };
    let before = start_measuring();
    let imported = import_from(
        &target,
        || std::fs::File::open(&path).map(BufReader::new),
        ImportOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    let import_growth = status_kb("VmHWM:").saturating_sub(before);
    println!("import: {size_kb} KiB read twice, peak RSS grew by {import_growth} KiB");
    assert_eq!(imported.source.events, N);
    assert_eq!(*target.appended.lock().unwrap(), N);
    // Generous: the file is ~55 MB; a transfer that held it would grow by as much.
    assert!(size_kb > 50_000, "the export is {size_kb} KiB");
    assert!(
        export_growth < 16 * 1024,
        "export grew by {export_growth} KiB"
    );
    assert!(
        import_growth < 16 * 1024,
        "import grew by {import_growth} KiB"
    );
}
