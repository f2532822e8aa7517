//! Checking and importing an export file.

use std::io::BufRead;

use dcb_core::{EventStore, Position};

use crate::export::{PROGRESS_EVERY, Tally};
use crate::format::{self, FORMAT_VERSION, Header, Line};
use crate::load::{ImportOptions, Loader, ensure_empty};
use crate::{Imported, Progress, Summary, TransferError};

/// Reads the lines of an export, checking their order and, at the end, the trailer.
struct Reader<R> {
    input: R,
    buf: Vec<u8>,
    number: u64,
    tally: Tally,
    header: Option<Header>,
    events: u64,
    state_entries: u64,
    last_position: Option<Position>,
    last_state: Option<(String, Vec<u8>)>,
    /// Consumers whose state lines have started.
    consumers_done: std::collections::HashSet<String>,
    ended: bool,
    trailer_len: u64,
}

impl<R: BufRead> Reader<R> {
    fn new(input: R) -> Reader<R> {
        Reader {
            input,
            buf: Vec::with_capacity(4096),
            number: 0,
            tally: Tally::new(),
            header: None,
            events: 0,
            state_entries: 0,
            last_position: None,
            last_state: None,
            consumers_done: Default::default(),
            ended: false,
            trailer_len: 0,
        }
    }

    fn damaged(&self, reason: impl Into<String>) -> TransferError {
        TransferError::Damaged(format!("line {}: {}", self.number, reason.into()))
    }

    /// The next event or state line; `None` after a valid trailer.
    fn next(&mut self) -> Result<Option<Line>, TransferError> {
        loop {
            self.buf.clear();
            let n = self.input.read_until(b'\n', &mut self.buf)?;
            if self.ended {
                if n > 0 {
                    self.number += 1;
                    return Err(self.damaged("data after the trailer"));
                }
                return Ok(None);
            }
            if n == 0 {
                return Err(TransferError::Damaged(format!(
                    "truncated after line {}: no trailer",
                    self.number
                )));
            }
            self.number += 1;
            if self.buf.last() != Some(&b'\n') {
                return Err(self.damaged("truncated (the last line has no end)"));
            }
            let line = format::parse_line(self.number, &self.buf[..self.buf.len() - 1])?;
            match line {
                Line::Header(h) => {
                    if self.header.is_some() || self.number != 1 {
                        return Err(self.damaged("a header that is not the first line"));
                    }
                    if h.fairway_export != FORMAT_VERSION {
                        return Err(TransferError::Format {
                            line: 1,
                            reason: format!(
                                "format version {}, this build reads version {FORMAT_VERSION}",
                                h.fairway_export
                            ),
                        });
                    }
                    if let Some((c, p)) = h.checkpoints.iter().find(|(_, p)| Some(**p) > h.head) {
                        return Err(
                            self.damaged(format!("checkpoint of {c:?} ({p}) past the head"))
                        );
                    }
                    self.tally.add(&self.buf);
                    self.header = Some(h);
                }
                _ if self.header.is_none() => {
                    return Err(self.damaged("the first line is not a header"));
                }
                Line::Event(position, event) => {
                    let head = self.header.as_ref().and_then(|h| h.head);
                    if self.last_position.is_some_and(|l| position <= l) {
                        return Err(self.damaged(format!("position {position} out of order")));
                    }
                    if Some(position) > head {
                        return Err(self.damaged(format!("position {position} past the head")));
                    }
                    self.last_position = Some(position);
                    self.events += 1;
                    self.tally.add(&self.buf);
                    return Ok(Some(Line::Event(position, event)));
                }
                Line::State(entry) => {
                    if self.last_position.is_some() {
                        return Err(self.damaged("consumer state after an event"));
                    }
                    // Grouped by consumer (in the backend's order of consumers), keys rising.
                    let same = self
                        .last_state
                        .as_ref()
                        .filter(|(consumer, _)| *consumer == entry.consumer)
                        .map(|(_, key)| key.as_slice());
                    match same {
                        Some(key) if entry.key.as_slice() <= key => {
                            let m = format!("state keys of {:?} out of order", entry.consumer);
                            return Err(self.damaged(m));
                        }
                        Some(_) => {}
                        None if !self.consumers_done.insert(entry.consumer.clone()) => {
                            let m = format!("the state of {:?} is split", entry.consumer);
                            return Err(self.damaged(m));
                        }
                        None => {}
                    }
                    self.last_state = Some((entry.consumer.clone(), entry.key.clone()));
                    self.state_entries += 1;
                    self.tally.add(&self.buf);
                    return Ok(Some(Line::State(entry)));
                }
                Line::Trailer(t) => {
                    let Some(h) = &self.header else {
                        return Err(self.damaged("the first line is not a header"));
                    };
                    let crc = format::crc_text(self.tally.crc.clone().finalize());
                    if t.crc32 != crc {
                        return Err(self.damaged(format!(
                            "checksum {crc} does not match the trailer's {}",
                            t.crc32
                        )));
                    }
                    if t.events != self.events || t.state_entries != self.state_entries {
                        return Err(self.damaged(format!(
                            "{} events and {} state entries, the trailer says {} and {}",
                            self.events, self.state_entries, t.events, t.state_entries
                        )));
                    }
                    if t.head != h.head || t.fairway_export_end != h.fairway_export {
                        return Err(self.damaged("the trailer does not match the header"));
                    }
                    if self.last_position != h.head && (self.events > 0 || h.head.is_some()) {
                        // The head is the last event of the source: a missing last event shows.
                        return Err(self.damaged(format!(
                            "the last event is at {:?}, the head is {:?}",
                            self.last_position, h.head
                        )));
                    }
                    self.ended = true;
                    self.trailer_len = self.buf.len() as u64;
                }
            }
        }
    }

    fn summary(&self) -> Summary {
        let header = self.header.as_ref();
        Summary {
            head: header.and_then(|h| h.head),
            events: self.events,
            state_entries: self.state_entries,
            checkpoints: header.map_or(0, |h| h.checkpoints.len() as u64),
            consumers: header.is_some_and(|h| h.consumers),
            crc32: self.tally.crc.clone().finalize(),
            bytes: self.tally.bytes + self.trailer_len,
        }
    }
}

/// Checks a whole export — every line, the order, the counts, the head and the checksum — and
/// returns what it holds, without writing anything anywhere.
pub fn verify<R: BufRead>(input: R) -> Result<Summary, TransferError> {
    Ok(verify_header(input)?.0)
}

fn verify_header<R: BufRead>(input: R) -> Result<(Summary, Header), TransferError> {
    let mut reader = Reader::new(input);
    while reader.next()?.is_some() {}
    let summary = reader.summary();
    let header = reader
        .header
        .ok_or_else(|| TransferError::Damaged("empty file".into()))?;
    Ok((summary, header))
}

/// Imports an export into an empty store: checks the whole export first (a truncated or damaged
/// file, or a store that is not empty, is refused with nothing written), then reads it a second
/// time and appends the events in order, in batches of `options`, then the consumers' state and
/// mapped checkpoints. `open` is called once per pass and must yield the same bytes each time
/// (a file, not a pipe).
pub async fn import_from<S, R, F>(
    store: &S,
    mut open: F,
    options: ImportOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Imported, TransferError>
where
    S: EventStore + ?Sized,
    R: BufRead,
    F: FnMut() -> std::io::Result<R>,
{
    let (checked, header) = verify_header(open()?)?;
    ensure_empty(store, header.checkpoints.keys()).await?;
    let mut reader = Reader::new(open()?);
    let mut loader = Loader::new(store, options, &header.checkpoints);
    let changed = |e: TransferError| TransferError::ChangedDuringImport(e.to_string());
    loop {
        match reader.next().map_err(changed)? {
            None => break,
            Some(Line::Event(position, event)) => {
                loader.event(position, event).await?;
                if reader.events.is_multiple_of(PROGRESS_EVERY) {
                    progress(Progress {
                        events: loader.events(),
                        total: Some(checked.events),
                    });
                }
            }
            Some(Line::State(entry)) => loader.state(entry).await?,
            Some(Line::Header(_) | Line::Trailer(_)) => {}
        }
    }
    let summary = reader.summary();
    if summary != checked || reader.header.as_ref() != Some(&header) {
        return Err(TransferError::ChangedDuringImport(
            "the second read differs from the first".into(),
        ));
    }
    let loaded = loader.finish().await?;
    if loaded.events != summary.events || loaded.state_entries != summary.state_entries {
        return Err(TransferError::ChangedDuringImport(format!(
            "{} events and {} state entries written, the export holds {} and {}",
            loaded.events, loaded.state_entries, summary.events, summary.state_entries
        )));
    }
    progress(Progress {
        events: loaded.events,
        total: Some(checked.events),
    });
    Ok(Imported {
        source: summary,
        head: loaded.head,
        same_positions: loaded.same_positions,
        checkpoints: loaded.checkpoints,
    })
}
