//! Checking a store's events against the current modules' types before a deploy: every stored
//! event is decoded by every event set that reads its type, with the upcasters applied, exactly as
//! the modules will decode it at run time. What fails is reported by type and position
//! (`fairway events check`).

use std::collections::{BTreeMap, HashMap};

use dcb_core::{EventStore, Position, Query, ReadOptions, StoreError};
use futures::StreamExt;
use serde::Serialize;

use crate::event::{DecodeError, EventSet, stored_version};

type DecodeFn = fn(&str, u32, &[u8]) -> Result<(), DecodeError>;

fn try_decode<E: EventSet>(event_type: &str, version: u32, data: &[u8]) -> Result<(), DecodeError> {
    E::decode_versioned(event_type, version, data).map(|_| ())
}

/// How one module decodes the events of one [`EventSet`] it reads. A [`Host`](crate::Host) lists
/// them with [`Host::decoders`](crate::Host::decoders).
#[derive(Clone)]
pub struct Decoder {
    /// The module that reads the set.
    pub module: String,
    /// The event set's Rust type name.
    pub set: &'static str,
    /// The stored type names the set decodes (current and former names).
    pub types: Vec<&'static str>,
    decode: DecodeFn,
}

impl Decoder {
    /// The decoder of event set `E` as read by `module`.
    pub fn of<E: EventSet>(module: &str) -> Decoder {
        Decoder {
            module: module.to_owned(),
            set: std::any::type_name::<E>(),
            types: E::stored_types(),
            decode: try_decode::<E>,
        }
    }
}

impl PartialEq for Decoder {
    fn eq(&self, other: &Decoder) -> bool {
        self.module == other.module && self.set == other.set
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("module", &self.module)
            .field("set", &self.set)
            .field("types", &self.types)
            .finish_non_exhaustive()
    }
}

/// One stored event that an event set cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckFailure {
    /// Where it is.
    pub position: Position,
    /// Its stored type.
    pub event_type: String,
    /// Its stored schema version.
    pub version: u32,
    /// The modules whose event set fails on it.
    pub modules: Vec<String>,
    /// The event set's Rust type name.
    pub set: String,
    /// Why.
    pub error: String,
}

/// Per stored type, what the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeReport {
    /// Stored events of this type.
    pub events: u64,
    /// Of those, how many at least one reader cannot decode.
    pub failed: u64,
    /// The modules that read the type (empty: no module reads it, so nothing can fail on it).
    pub readers: Vec<String>,
}

/// What [`check_events`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The head the check read up to.
    pub head: Option<Position>,
    /// Events checked.
    pub events: u64,
    /// Events at least one reader cannot decode.
    pub failed: u64,
    /// Per stored type.
    pub types: BTreeMap<String, TypeReport>,
    /// The first failures, in position order (at most the `max_listed` given to the check).
    pub failures: Vec<CheckFailure>,
}

impl CheckReport {
    /// Whether every event decodes for every reader.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

struct Reader {
    set: &'static str,
    modules: Vec<String>,
    decode: DecodeFn,
}

/// Decodes every event of `store` up to its current head with every decoder that reads its type
/// and reports what fails. Memory is bounded: events are streamed, and at most `max_listed`
/// failures are kept (the counts cover all). `progress` is called with the number of events
/// checked so far, every 10 000 events and at the end.
pub async fn check_events(
    store: &dyn EventStore,
    decoders: &[Decoder],
    max_listed: usize,
    mut progress: impl FnMut(u64),
) -> Result<CheckReport, StoreError> {
    // Per stored type, its distinct readers (one event set read by several modules decodes once).
    let mut readers: HashMap<&'static str, Vec<Reader>> = HashMap::new();
    for d in decoders {
        for t in &d.types {
            let list = readers.entry(t).or_default();
            match list.iter_mut().find(|r| r.set == d.set) {
                Some(r) => {
                    if !r.modules.contains(&d.module) {
                        r.modules.push(d.module.clone());
                    }
                }
                None => list.push(Reader {
                    set: d.set,
                    modules: vec![d.module.clone()],
                    decode: d.decode,
                }),
            }
        }
    }
    let mut stream = store.read(Query::All, ReadOptions::new()).await?;
    let mut report = CheckReport {
        head: stream.head(),
        ..CheckReport::default()
    };
    while let Some(stored) = stream.next().await {
        let stored = stored?;
        let event = &stored.event;
        let event_type: &str = &event.event_type;
        report.events += 1;
        let readers_of = readers.get(event_type);
        let entry = match report.types.get_mut(event_type) {
            Some(e) => e,
            None => {
                let mut readers_list: Vec<String> = readers_of
                    .map(|rs| rs.iter().flat_map(|r| r.modules.iter().cloned()).collect())
                    .unwrap_or_default();
                readers_list.sort();
                readers_list.dedup();
                report
                    .types
                    .entry(event_type.to_owned())
                    .or_insert(TypeReport {
                        readers: readers_list,
                        ..TypeReport::default()
                    })
            }
        };
        entry.events += 1;
        let mut failed = false;
        if let Some(rs) = readers_of {
            let version = stored_version(event_type, &event.metadata);
            for r in rs {
                let result = match &version {
                    Ok(v) => (r.decode)(event_type, *v, &event.data),
                    Err(e) => Err(e.clone()),
                };
                if let Err(e) = result {
                    failed = true;
                    if report.failures.len() < max_listed {
                        report.failures.push(CheckFailure {
                            position: stored.position,
                            event_type: event_type.to_owned(),
                            version: *version.as_ref().unwrap_or(&0),
                            modules: r.modules.clone(),
                            set: r.set.to_owned(),
                            error: e.to_string(),
                        });
                    }
                }
            }
        }
        if failed {
            entry.failed += 1;
            report.failed += 1;
        }
        if report.events.is_multiple_of(10_000) {
            progress(report.events);
        }
    }
    progress(report.events);
    Ok(report)
}
