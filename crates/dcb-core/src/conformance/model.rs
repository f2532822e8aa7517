//! The model test: random operation sequences applied to a backend and to [`MemoryStore`] must
//! have the same outcomes.
//!
//! Each case draws up to 40 operations: appends of 1–3 events (types `A`/`B`/`C`, tags from
//! `t0`..`t4`, ids from a pool of six so retries and conflicts happen, now and then an invalid
//! event), with 0–2 conditions whose `after` is none, zero, the position of an earlier event or
//! the maximum, and sometimes a checkpoint to advance; retries of an earlier append; reads with a
//! random query, bounds, limit and direction; checkpoint lookups. Both stores start empty.
//!
//! Positions may differ between backends (FoundationDB uses versionstamps), so they are compared
//! through their **rank** (the k-th event stored), and every position in a request is chosen as
//! a rank and translated to each store's own position. Outcomes must agree exactly: the same
//! events (rank and content) read with the same head, the same append ranks and `replayed`
//! flag, the same error kind (condition index, `IdConflict`, the exact [`InputError`],
//! `CheckpointConflict`).

use std::future::Future;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::Fixture;
use crate::{
    AppendCondition, AppendRequest, Event, EventStore, InputError, MemoryStore, Position, Query,
    QueryItem, ReadOptions, StoreError,
};

const TYPES: [&str; 3] = ["A", "B", "C"];
const TAGS: [&str; 5] = ["t0", "t1", "t2", "t3", "t4"];
const CONSUMERS: [&str; 2] = ["c0", "c1"];

/// A position chosen as a rank, translated per store.
#[derive(Debug, Clone, Copy)]
pub enum RankRef {
    /// Position zero.
    Zero,
    /// The position of stored event number `i % count` (zero on an empty store).
    Event(usize),
    /// The largest position.
    Max,
}

/// A query, built the same way for both stores.
#[derive(Debug, Clone)]
pub enum QuerySpec {
    /// `Query::All`.
    All,
    /// An empty item list (an input error).
    Empty,
    /// Items of (type indexes, tag indexes).
    Items(Vec<(Vec<u8>, Vec<u8>)>),
}

/// What makes a generated event invalid.
#[derive(Debug, Clone, Copy)]
pub enum Invalid {
    /// An empty type.
    EmptyType,
    /// A tag given twice.
    DuplicateTag,
    /// A control character in the type.
    ControlCharacter,
}

/// A generated event.
#[derive(Debug, Clone)]
pub struct EventSpec {
    ty: u8,
    tags: Vec<u8>,
    id: Option<u8>,
    data: u8,
    invalid: Option<Invalid>,
}

/// A generated append.
#[derive(Debug, Clone)]
pub struct AppendSpec {
    events: Vec<EventSpec>,
    conditions: Vec<(QuerySpec, Option<RankRef>)>,
    tracking: Option<(u8, RankRef)>,
}

/// One generated operation.
#[derive(Debug, Clone)]
pub enum Op {
    /// A new append.
    Append(AppendSpec),
    /// The earlier append number `i % count` again, exactly.
    Retry(usize),
    /// A read.
    Read {
        /// The query.
        query: QuerySpec,
        /// Lower bound: (`true` = `from`, `false` = `after`, position).
        start: Option<(bool, RankRef)>,
        /// Exclusive upper bound.
        before: Option<RankRef>,
        /// Limit.
        limit: Option<u64>,
        /// Newest first.
        backwards: bool,
    },
    /// A checkpoint lookup.
    Checkpoint(u8),
}

/// A position as the model compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PosKey {
    Zero,
    Rank(usize),
    Max,
    Other(Position),
}

/// The comparable outcome of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Appended {
        ranks: Vec<PosKey>,
        replayed: bool,
    },
    Read {
        head: Option<PosKey>,
        events: Vec<(PosKey, Event)>,
    },
    Checkpoint(Option<PosKey>),
    ConditionFailed(usize),
    IdConflict,
    CheckpointConflict,
    Input(InputError),
    Other(String),
    Skipped,
}

/// One store under test with its rank table.
struct Side {
    store: Arc<dyn EventStore>,
    ranks: Vec<Position>,
}

impl Side {
    fn pos(&self, r: RankRef) -> Position {
        match r {
            RankRef::Zero => Position::ZERO,
            RankRef::Max => Position::MAX,
            RankRef::Event(i) => {
                if self.ranks.is_empty() {
                    Position::ZERO
                } else {
                    self.ranks[i % self.ranks.len()]
                }
            }
        }
    }

    fn key(&self, p: Position) -> PosKey {
        if p == Position::ZERO {
            return PosKey::Zero;
        }
        if p == Position::MAX {
            return PosKey::Max;
        }
        match self.ranks.binary_search(&p) {
            Ok(i) => PosKey::Rank(i),
            Err(_) => PosKey::Other(p),
        }
    }

    fn query(q: &QuerySpec) -> Query {
        match q {
            QuerySpec::All => Query::All,
            QuerySpec::Empty => Query::Items(Vec::new()),
            QuerySpec::Items(items) => Query::items(items.iter().map(|(types, tags)| {
                QueryItem::new()
                    .types(types.iter().map(|&t| TYPES[usize::from(t) % TYPES.len()]))
                    .tags(tags.iter().map(|&t| TAGS[usize::from(t) % TAGS.len()]))
            })),
        }
    }

    fn request(&self, spec: &AppendSpec) -> AppendRequest {
        let events = spec.events.iter().map(build_event).collect();
        let conditions = spec
            .conditions
            .iter()
            .map(|(q, after)| AppendCondition::new(Side::query(q), after.map(|a| self.pos(a))))
            .collect();
        let mut req = AppendRequest {
            events,
            conditions,
            tracking: None,
        };
        if let Some((c, at)) = spec.tracking {
            req = req.track(CONSUMERS[usize::from(c) % CONSUMERS.len()], self.pos(at));
        }
        req
    }

    async fn apply(&mut self, op: &Op, appends: &[AppendSpec]) -> Outcome {
        match op {
            Op::Append(spec) => self.append(spec).await,
            Op::Retry(i) => match appends.get(i % appends.len().max(1)) {
                Some(spec) => self.append(spec).await,
                None => Outcome::Skipped,
            },
            Op::Read {
                query,
                start,
                before,
                limit,
                backwards,
            } => {
                let mut options = ReadOptions::new();
                match start {
                    Some((true, r)) => options = options.from(self.pos(*r)),
                    Some((false, r)) => options = options.after(self.pos(*r)),
                    None => {}
                }
                if let Some(b) = before {
                    options = options.before(self.pos(*b));
                }
                if let Some(l) = limit {
                    options = options.limit(*l);
                }
                if *backwards {
                    options = options.backwards();
                }
                match self.store.read(Side::query(query), options).await {
                    Err(e) => error_outcome(e),
                    Ok(stream) => {
                        let head = stream.head().map(|h| self.key(h));
                        match stream.collect_all().await {
                            Ok(events) => Outcome::Read {
                                head,
                                events: events
                                    .into_iter()
                                    .map(|e| (self.key(e.position), e.event))
                                    .collect(),
                            },
                            Err(e) => error_outcome(e),
                        }
                    }
                }
            }
            Op::Checkpoint(c) => match self
                .store
                .checkpoint(CONSUMERS[usize::from(*c) % CONSUMERS.len()])
                .await
            {
                Ok(p) => Outcome::Checkpoint(p.map(|p| self.key(p))),
                Err(e) => error_outcome(e),
            },
        }
    }

    async fn append(&mut self, spec: &AppendSpec) -> Outcome {
        let req = self.request(spec);
        match self.store.append_request(req).await {
            Err(e) => error_outcome(e),
            Ok(a) => {
                if !a.replayed {
                    for p in &a.positions {
                        if self.ranks.last().is_some_and(|last| last >= p) {
                            return Outcome::Other(format!(
                                "position {p:?} not above {:?}",
                                self.ranks.last()
                            ));
                        }
                        self.ranks.push(*p);
                    }
                }
                Outcome::Appended {
                    ranks: a.positions.iter().map(|p| self.key(*p)).collect(),
                    replayed: a.replayed,
                }
            }
        }
    }
}

fn build_event(s: &EventSpec) -> Event {
    let mut e = Event::new(TYPES[usize::from(s.ty) % TYPES.len()], vec![s.data]);
    for &t in &s.tags {
        e = e.tag(TAGS[usize::from(t) % TAGS.len()]);
    }
    if let Some(id) = s.id {
        e = e.with_id(uuid::Uuid::from_u128(0xfa17_0000 + u128::from(id)));
    }
    match s.invalid {
        None => {}
        Some(Invalid::EmptyType) => e.event_type = crate::Text::new(),
        Some(Invalid::DuplicateTag) => {
            let t = e.tags.first().cloned().unwrap_or_else(|| "t0".into());
            e.tags.push(t.clone());
            if e.tags.len() == 1 {
                e.tags.push(t);
            }
        }
        Some(Invalid::ControlCharacter) => e.event_type = format!("{}\n", e.event_type).into(),
    }
    e
}

fn error_outcome(e: StoreError) -> Outcome {
    match e {
        StoreError::ConditionFailed { condition } => Outcome::ConditionFailed(condition),
        StoreError::IdConflict { .. } => Outcome::IdConflict,
        StoreError::CheckpointConflict { .. } => Outcome::CheckpointConflict,
        StoreError::InvalidInput(i) => Outcome::Input(i),
        other => Outcome::Other(other.to_string()),
    }
}

fn rank_ref() -> impl Strategy<Value = RankRef> {
    prop_oneof![1 => Just(RankRef::Zero), 8 => (0usize..64).prop_map(RankRef::Event), 1 => Just(RankRef::Max)]
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    let item = (
        proptest::collection::vec(0u8..3, 0..3),
        proptest::collection::vec(0u8..5, 0..3),
    );
    prop_oneof![
        2 => Just(QuerySpec::All),
        1 => Just(QuerySpec::Empty),
        20 => proptest::collection::vec(item, 1..3).prop_map(QuerySpec::Items),
    ]
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    let invalid = prop_oneof![
        30 => Just(None),
        1 => Just(Some(Invalid::EmptyType)),
        1 => Just(Some(Invalid::DuplicateTag)),
        1 => Just(Some(Invalid::ControlCharacter)),
    ];
    let id = prop_oneof![1 => Just(None), 1 => (0u8..6).prop_map(Some)];
    (
        0u8..3,
        proptest::sample::subsequence(vec![0u8, 1, 2, 3, 4], 0..=3),
        id,
        0u8..4,
        invalid,
    )
        .prop_map(|(ty, tags, id, data, invalid)| EventSpec {
            ty,
            tags,
            id,
            data,
            invalid,
        })
}

fn append_spec() -> impl Strategy<Value = AppendSpec> {
    let tracking = prop_oneof![4 => Just(None), 1 => (0u8..2, rank_ref()).prop_map(Some)];
    (
        proptest::collection::vec(event_spec(), 1..=3),
        proptest::collection::vec(
            (query_spec(), proptest::option::weighted(0.7, rank_ref())),
            0..=2,
        ),
        tracking,
    )
        .prop_map(|(events, conditions, tracking)| AppendSpec {
            events,
            conditions,
            tracking,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let read = (
        query_spec(),
        proptest::option::of((any::<bool>(), rank_ref())),
        proptest::option::weighted(0.3, rank_ref()),
        proptest::option::weighted(0.4, 0u64..5),
        any::<bool>(),
    )
        .prop_map(|(query, start, before, limit, backwards)| Op::Read {
            query,
            start,
            before,
            limit,
            backwards,
        });
    prop_oneof![
        6 => append_spec().prop_map(Op::Append),
        2 => (0usize..64).prop_map(Op::Retry),
        4 => read,
        1 => (0u8..2).prop_map(Op::Checkpoint),
    ]
}

/// The strategy for one case: 1 to 40 operations.
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..=40)
}

/// Applies `ops` to a fresh backend store and a fresh [`MemoryStore`]; `Err` describes the first
/// disagreement.
pub async fn compare(backend: Arc<dyn EventStore>, ops: &[Op]) -> Result<(), String> {
    let mut model = Side {
        store: Arc::new(MemoryStore::new()),
        ranks: Vec::new(),
    };
    let mut real = Side {
        store: backend,
        ranks: Vec::new(),
    };
    let mut appends: Vec<AppendSpec> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Append(spec) = op {
            appends.push(spec.clone());
        }
        let expected = model.apply(op, &appends).await;
        let got = real.apply(op, &appends).await;
        if expected != got {
            return Err(format!(
                "operation {i} ({op:?}): reference gave {expected:?}, backend gave {got:?}"
            ));
        }
        if let Outcome::Other(msg) = &got {
            return Err(format!(
                "operation {i} ({op:?}): unexpected failure on both stores: {msg}"
            ));
        }
    }
    let all = Op::Read {
        query: QuerySpec::All,
        start: None,
        before: None,
        limit: None,
        backwards: false,
    };
    let expected = model.apply(&all, &appends).await;
    let got = real.apply(&all, &appends).await;
    if expected != got {
        return Err(format!(
            "final contents differ: reference {expected:?}, backend {got:?}"
        ));
    }
    Ok(())
}

/// Runs `cases` random cases, each on a fresh fixture from `factory`, comparing it with the
/// reference. Panics with the shrunk failing sequence on a disagreement.
pub fn model_test<F, Fut>(factory: F, cases: u32)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture>,
{
    let rt = super::runtime();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&ops(), |ops| {
        rt.block_on(async {
            let fixture = factory().await;
            let outcome = compare(fixture.store.clone(), &ops).await;
            drop(fixture);
            outcome.map_err(TestCaseError::fail)
        })
    });
    if let Err(e) = result {
        panic!("the backend disagrees with the reference store: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_keys_translate_both_ways() {
        let side = Side {
            store: Arc::new(MemoryStore::new()),
            ranks: vec![
                Position::from_u64(5),
                Position::from_u64(9),
                Position::from_u64(40),
            ],
        };
        assert_eq!(side.pos(RankRef::Event(4)), Position::from_u64(9));
        assert_eq!(side.key(Position::from_u64(40)), PosKey::Rank(2));
        assert_eq!(
            side.key(Position::from_u64(6)),
            PosKey::Other(Position::from_u64(6))
        );
        assert_eq!(side.key(Position::ZERO), PosKey::Zero);
    }

    #[test]
    fn invalid_events_are_invalid() {
        let base = EventSpec {
            ty: 0,
            tags: vec![],
            id: None,
            data: 0,
            invalid: Some(Invalid::DuplicateTag),
        };
        assert!(crate::limits::validate_event(&build_event(&base)).is_err());
        let empty = EventSpec {
            invalid: Some(Invalid::EmptyType),
            ..base.clone()
        };
        assert!(crate::limits::validate_event(&build_event(&empty)).is_err());
        let ctl = EventSpec {
            invalid: Some(Invalid::ControlCharacter),
            ..base
        };
        assert!(crate::limits::validate_event(&build_event(&ctl)).is_err());
    }
}
