//! Adapter for UmaDB (`umadb-core` on crates.io).

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};
use umadb_core::db::UmaDb as Db;
use umadb_core::mvcc::{Mvcc, StorageOptions};
use umadb_core::writer_thread_blocking::writer_thread_blocking;
use umadb_core::writer_thread_request::WriterThreadRequest;
use umadb_dcb::{
    DcbAppendCondition, DcbError, DcbEvent, DcbEventStoreSync, DcbQuery, DcbQueryItem,
};

use crate::{BenchError, BenchEvent, BenchStore, Guard, Outcome, ReadSummary};

pub(super) const SETTINGS: &str = "Mvcc::new(StorageOptions::default()) (uma.db, 4 KiB pages, \
no_fsync hard-wired to false) + umadb-core's own writer_thread_blocking, the default writer of \
UmaDB's server, with its server's APPEND_BATCH_MAX_EVENTS = 2000: queued appends are processed \
in one write transaction and Mvcc::commit fdatasyncs twice (dirty pages, then header) before \
replying. Reads page through UmaDb::read with limit 5000 (the server's maximum read batch), \
since one unbounded read materialises the whole result.";

const NAME: &str = "umadb";
const APPEND_BATCH_MAX_EVENTS: usize = 2000;
const READ_PAGE: u32 = 5000;

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::store(NAME, e)
}

/// UmaDB behind the bench trait.
pub(super) struct UmaDb {
    db: Db,
    sender: Option<mpsc::Sender<WriterThreadRequest>>,
    writer: Option<JoinHandle<()>>,
}

impl UmaDb {
    pub(super) fn open(dir: &Path) -> Result<UmaDb, BenchError> {
        std::fs::create_dir_all(dir)?;
        let mvcc = Arc::new(Mvcc::new(false, StorageOptions::default().db_path(dir)).map_err(err)?);
        let (tx, rx) = mpsc::channel(16384);
        let (head_tx, _head_rx) = watch::channel(None);
        let for_writer = mvcc.clone();
        let writer = std::thread::Builder::new()
            .name("umadb-writer".into())
            .spawn(move || {
                writer_thread_blocking(for_writer, rx, head_tx, APPEND_BATCH_MAX_EVENTS)
            })?;
        Ok(UmaDb {
            db: Db::from_arc(mvcc),
            sender: Some(tx),
            writer: Some(writer),
        })
    }

    fn read(&self, query: Option<DcbQuery>) -> Result<ReadSummary, BenchError> {
        let head = self.db.head().map_err(err)?;
        let mut s = ReadSummary {
            head,
            ..ReadSummary::default()
        };
        let mut start: Option<u64> = None;
        loop {
            let page = self
                .db
                .read(query.clone(), start, false, Some(READ_PAGE))
                .map_err(err)?;
            let mut n = 0u32;
            for e in page {
                let e = e.map_err(err)?;
                // Paging must not read past the head captured first (one snapshot).
                if head.is_none_or(|h| e.position > h) {
                    n = 0;
                    break;
                }
                s.add(e.position, &e.event.data);
                n += 1;
            }
            match s.last {
                Some(last) if n == READ_PAGE => start = Some(last + 1),
                _ => break,
            }
        }
        Ok(s)
    }
}

impl Drop for UmaDb {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop once it has drained what was queued.
        drop(self.sender.take());
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}

fn tag_query(tag: &str) -> DcbQuery {
    DcbQuery {
        items: vec![DcbQueryItem {
            types: vec![],
            tags: vec![tag.to_owned()],
        }],
    }
}

impl BenchStore for UmaDb {
    fn name(&self) -> &'static str {
        NAME
    }

    fn append(&self, events: Vec<BenchEvent>, guard: Option<Guard>) -> Result<Outcome, BenchError> {
        let events = events
            .into_iter()
            .map(|e| DcbEvent {
                event_type: e.event_type,
                tags: e.tags,
                data: e.data,
                uuid: None,
                metadata: vec![],
            })
            .collect();
        let condition = guard.map(|g| DcbAppendCondition {
            fail_if_events_match: tag_query(&g.tag),
            after: g.after,
        });
        let (response_tx, response_rx) = oneshot::channel();
        let sender = self.sender.as_ref().ok_or_else(|| err("closed"))?;
        sender
            .blocking_send(WriterThreadRequest::Append {
                events,
                condition,
                tracking_info: None,
                response_tx,
                cancel: None,
            })
            .map_err(|_| err("writer thread gone"))?;
        match response_rx
            .blocking_recv()
            .map_err(|_| err("writer thread dropped the reply"))?
        {
            Ok(last) => Ok(Outcome::Written(last)),
            Err(DcbError::IntegrityError(_)) => Ok(Outcome::Conflict),
            Err(e) => Err(err(e)),
        }
    }

    fn read_tag(&self, tag: &str) -> Result<ReadSummary, BenchError> {
        self.read(Some(tag_query(tag)))
    }

    fn scan(&self) -> Result<ReadSummary, BenchError> {
        self.read(None)
    }
}
