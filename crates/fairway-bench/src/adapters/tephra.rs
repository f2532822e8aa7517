//! Adapter for Tephra (`tephra` on crates.io).

use std::path::Path;
use std::sync::Mutex;

use tephra::{
    AppendCondition, AppendError, Event, EventType, Position, Query, QueryItem, SegmentConfig,
    SegmentSet, Tag, Tags, WriteCoordinator, WriteHandle, WriterConfig,
};

use crate::{BenchError, BenchEvent, BenchStore, Guard, Outcome, ReadSummary};

pub(super) const SETTINGS: &str = "SegmentSet::open(dir, SegmentConfig::new(256 MiB)) (fallocated \
segments) + WriteCoordinator::start(WriterConfig::default()): one writer thread groups up to 2048 \
requests / 8 MiB, and seglog's Writer::commit writes a commit marker then calls sync_data \
(fdatasync) before any reply; this is Tephra's only mode (no option turns it off). Indexes in \
memory, rebuilt from the log.";

const NAME: &str = "tephra";
const SEGMENT_SIZE: usize = 256 * 1024 * 1024;

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::store(NAME, e)
}

fn tags(names: &[String]) -> Result<Tags, BenchError> {
    let tags = names
        .iter()
        .map(|t| Tag::new(t.as_str()).map_err(err))
        .collect::<Result<Vec<_>, _>>()?;
    Tags::new(tags).map_err(err)
}

/// Tephra behind the bench trait.
pub(super) struct Tephra {
    coordinator: Mutex<Option<WriteCoordinator>>,
    handle: WriteHandle,
}

impl Tephra {
    pub(super) fn open(dir: &Path) -> Result<Tephra, BenchError> {
        let set = SegmentSet::open(dir, SegmentConfig::new(SEGMENT_SIZE)).map_err(err)?;
        let (coordinator, handle) =
            WriteCoordinator::start(set, WriterConfig::default()).map_err(err)?;
        Ok(Tephra {
            coordinator: Mutex::new(Some(coordinator)),
            handle,
        })
    }

    fn read(&self, query: &Query) -> Result<ReadSummary, BenchError> {
        let mut reads = self.handle.read(query, Position::ZERO, None);
        let watermark = reads.watermark().get();
        let mut s = ReadSummary {
            head: (watermark > 0).then_some(watermark),
            ..ReadSummary::default()
        };
        while let Some(item) = reads.next() {
            let seq = item.map_err(err)?;
            s.add(seq.position.get(), seq.event.data());
        }
        Ok(s)
    }
}

impl Drop for Tephra {
    fn drop(&mut self) {
        if let Some(c) = self
            .coordinator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            drop(c.shutdown());
        }
    }
}

impl BenchStore for Tephra {
    fn name(&self) -> &'static str {
        NAME
    }

    fn append(&self, events: Vec<BenchEvent>, guard: Option<Guard>) -> Result<Outcome, BenchError> {
        let mut encoded = Vec::with_capacity(events.len());
        for e in events {
            let ty = EventType::new(e.event_type).map_err(err)?;
            encoded.push(Event::new(&ty, &tags(&e.tags)?, &e.data).map_err(err)?);
        }
        let condition = match guard {
            Some(g) => Some(
                AppendCondition::new(Query::item(QueryItem::with_tags(tags(&[g.tag])?)))
                    .after(Position::new(g.after.unwrap_or(0))),
            ),
            None => None,
        };
        match self.handle.append(encoded, condition) {
            Ok(range) => Ok(Outcome::Written(range.last.get())),
            // A same-batch conflict means an earlier request of the same group commit won.
            Err(AppendError::Conflict { .. }) => Ok(Outcome::Conflict),
            Err(e) => Err(err(e)),
        }
    }

    fn read_tag(&self, tag: &str) -> Result<ReadSummary, BenchError> {
        self.read(&Query::item(QueryItem::with_tags(tags(&[tag.to_owned()])?)))
    }

    fn scan(&self) -> Result<ReadSummary, BenchError> {
        self.read(&Query::all())
    }
}
