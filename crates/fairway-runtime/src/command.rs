//! Commands: read, fold, decide, append on condition; re-run on a conflicting write.

use std::fmt::Debug;
use std::time::{Duration, SystemTime};

use std::collections::BTreeMap;

use dcb_core::{
    AppendCondition, AppendRequest, Position, Query, ReadOptions, SequencedEvent, StoreError,
    Tracking,
};
use uuid::Uuid;

use crate::decision::{Decide, DecisionModel};
use crate::env::{Environment, backoff};
use crate::event::{
    DecodeError, EncodeError, EventSet, NewEvent, Sequenced, TypeOutsideSet, restrict_set,
};
use crate::runtime::Runtime;

/// How a domain rejection maps to HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 409: the request conflicts with the current state (the default).
    Conflict,
    /// 404: the resource the command addresses does not exist.
    NotFound,
    /// 422: the request is well-formed but not acceptable.
    Unprocessable,
    /// 400: the input is invalid.
    BadRequest,
}

/// A command's typed business rejection.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain error",
    note = "implement `fairway_runtime::DomainError` for it: `fn code` (snake_case) and optionally `fn rejection`"
)]
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// A stable snake_case code, e.g. `"email_taken"`.
    fn code(&self) -> &'static str;
    /// How it maps to HTTP; 409 by default.
    fn rejection(&self) -> Rejection {
        Rejection::Conflict
    }
}

impl DomainError for std::convert::Infallible {
    fn code(&self) -> &'static str {
        match *self {}
    }
}

/// How long a command keeps re-running when a conflicting write happened between its read and
/// its append, and the jittered backoff between attempts.
///
/// A hot boundary (fifty clients taking the next invoice number) needs many attempts: each round
/// only one of them wins. So the bound is a **time budget** (2 s by default) rather than a count;
/// `max_attempts` is a ceiling on top (1 000 by default). Each pause is exponential from
/// `base_delay`, capped at `max_delay`, half of it random ("equal jitter"), and never longer than
/// what is left of the budget. When the budget is spent the command fails with
/// [`CommandError::Contention`] (HTTP 503 with `Retry-After`).
///
/// ```
/// use std::time::Duration;
/// use fairway_runtime::RetryPolicy;
/// let p = RetryPolicy::within(Duration::from_secs(5));
/// assert_eq!(p.budget, Duration::from_secs(5));
/// assert_eq!(RetryPolicy::attempts(3).max_attempts, 3);
/// assert_eq!(RetryPolicy::default().budget, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts at most (at least 1 is always made).
    pub max_attempts: u32,
    /// Time after which no further attempt starts, counted from the first.
    pub budget: Duration,
    /// First backoff; doubles each attempt.
    pub base_delay: Duration,
    /// Backoff cap.
    pub max_delay: Duration,
}

/// The default retry budget of a command.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(2);

/// The `Retry-After` (seconds) of the 503 `contention` answered when a command spent its retry
/// budget: the boundary was hot, and a retry a moment later usually wins.
pub const CONTENTION_RETRY_AFTER_SECS: u64 = 1;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1_000,
            budget: DEFAULT_RETRY_BUDGET,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// At most `max_attempts` attempts (within the default budget), default delays.
    pub fn attempts(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        }
    }

    /// Keep re-running for up to `budget`, default delays.
    pub fn within(budget: Duration) -> RetryPolicy {
        RetryPolicy {
            budget,
            ..RetryPolicy::default()
        }
    }
}

/// One independent read of a command: its own query, optionally only the last `n` matches, and
/// its own append condition (the query, or a narrower conflict query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// What to read.
    pub query: Query,
    /// Read only the last `n` matching events (backwards with a limit).
    pub last: Option<u64>,
    /// The condition's query when narrower than `query`.
    pub conflict: Option<Query>,
}

impl Read {
    /// Every event matching `query`; the condition is the same query.
    pub fn new(query: Query) -> Read {
        Read {
            query,
            last: None,
            conflict: None,
        }
    }

    /// Only the last `n` matching events. Safe: the condition still fails on any matching event
    /// after the head this read saw.
    pub fn last(mut self, n: u64) -> Read {
        self.last = Some(n);
        self
    }

    /// Uses a narrower query for the append condition.
    pub fn conflict(mut self, query: Query) -> Read {
        self.conflict = Some(query);
        self
    }
}

/// What a decision sees besides the state: time, ids, randomness and the command's services.
pub struct Ctx<'a, D> {
    env: &'a dyn Environment,
    deps: &'a D,
    now: SystemTime,
    attempt: u32,
}

impl<'a, D> Ctx<'a, D> {
    /// A context (the runtime builds it; tests of `decide` alone can too).
    pub fn new(env: &'a dyn Environment, deps: &'a D) -> Ctx<'a, D> {
        Ctx {
            env,
            deps,
            now: env.now(),
            attempt: 1,
        }
    }

    /// The time of this attempt (fixed for the whole decision).
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// A fresh id.
    pub fn new_id(&self) -> Uuid {
        self.env.new_id()
    }

    /// A random number.
    pub fn random_u64(&self) -> u64 {
        self.env.random_u64()
    }

    /// The command's services.
    pub fn deps(&self) -> &'a D {
        self.deps
    }

    /// Which attempt this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A command: reads what its decision needs, folds it into a small state, decides.
///
/// ```
/// use fairway_runtime::{Command, Ctx, NewEvent, Sequenced, DomainEvent, tag};
/// use dcb_core::Query;
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct Opened { id: u64 }
/// # impl DomainEvent for Opened { const TYPE: &'static str = "Opened"; fn tags(&self) -> Vec<String> { vec![tag("account", self.id)] } }
/// fairway_runtime::event_set! { enum AccountEvents { Opened(Opened) } }
/// #[derive(Debug, thiserror::Error, PartialEq)]
/// enum OpenError { #[error("already open")] AlreadyOpen }
/// impl fairway_runtime::DomainError for OpenError { fn code(&self) -> &'static str { "already_open" } }
/// struct Open { id: u64 }
/// impl Command for Open {
///     type Events = AccountEvents;
///     type State = bool;
///     type Error = OpenError;
///     type Deps = ();
///     fn query(&self) -> Query { Query::tagged(tag("account", self.id)) }
///     fn evolve(open: &mut bool, _: &Sequenced<AccountEvents>) { *open = true; }
///     fn decide(&self, open: &bool, _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, OpenError> {
///         if *open { return Err(OpenError::AlreadyOpen) }
///         Ok(vec![Opened { id: self.id }.into()])
///     }
/// }
/// fairway_runtime::testing::given([Opened { id: 1 }]).when(Open { id: 1 }).then_err(OpenError::AlreadyOpen);
/// fairway_runtime::testing::nothing().when(Open { id: 1 }).then([Opened { id: 1 }]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Fairway command",
    note = "implement `fairway_runtime::Command`: `Events`, `State`, `Error`, `Deps`, `query`, `evolve`, `decide`"
)]
pub trait Command: Send + Sync + 'static {
    /// The events it reads (its queries are restricted to these types).
    type Events: EventSet;
    /// What the decision needs to know, folded from the events.
    type State: Default + Send;
    /// The business rejection.
    type Error: DomainError;
    /// Services the decision uses (a mailer, a hasher); `()` when none.
    type Deps: Send + Sync + 'static;

    /// The main read: its matches are folded and it is the append condition.
    fn query(&self) -> Query;

    /// Read only the last `n` matches of [`Command::query`] (e.g. the last event of a tag).
    fn last(&self) -> Option<u64> {
        None
    }

    /// A narrower query for the main read's append condition.
    fn conflict_query(&self) -> Option<Query> {
        None
    }

    /// Further independent reads, each with its own condition.
    fn more_reads(&self) -> Vec<Read> {
        Vec::new()
    }

    /// Folds one event (oldest first, every read merged by position) into the state.
    fn evolve(state: &mut Self::State, event: &Sequenced<Self::Events>);

    /// The events to append, or a rejection.
    fn decide(
        &self,
        state: &Self::State,
        ctx: &Ctx<'_, Self::Deps>,
    ) -> Result<Vec<NewEvent>, Self::Error>;

    /// How long to keep re-running when a conflicting write happened between read and append
    /// (a 2 s budget by default, see [`RetryPolicy`]).
    fn retry(&self) -> RetryPolicy {
        RetryPolicy::default()
    }
}

/// Why a command did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The decision rejected the command.
    #[error("rejected: {0}")]
    Rejected(E),
    /// Every attempt met a conflicting write until the retry budget was spent.
    #[error(
        "gave up after {attempts} attempts: the events it depends on kept changing (retry budget spent)"
    )]
    Contention {
        /// Attempts made.
        attempts: u32,
    },
    /// The store failed or refused the input.
    #[error(transparent)]
    Store(StoreError),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A new event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The command's query names a type outside its event set.
    #[error(transparent)]
    Query(#[from] TypeOutsideSet),
}

impl<E> CommandError<E> {
    /// The rejection, when it is one.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            CommandError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

/// A completed command: where its events went and what its decision handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed<T = ()> {
    /// Positions of the appended events (empty when the decision appended nothing).
    pub positions: Vec<Position>,
    /// Attempts it took.
    pub attempts: u32,
    /// The append was an idempotent replay of a batch already stored.
    pub replayed: bool,
    /// The value the decision returned with its events ([`Decision::output`](crate::Decision::output); `()` for a
    /// [`Command`]).
    pub output: T,
}

impl<T> Executed<T> {
    /// The last appended position (wait for views to reach it for read-your-writes).
    pub fn last(&self) -> Option<Position> {
        self.positions.last().copied()
    }
}

/// How appended events get their ids.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ids {
    /// From the environment.
    Fresh,
    /// Derived from a base: the same base gives the same ids (automation retries).
    Derived(Uuid),
}

/// The physical reads of a decision model: the reads without `last` or a conflict query merged
/// into one (one read, one append condition), the others on their own.
struct Plan {
    /// Each logical read's restricted query, and whether it is part of the merged read.
    logical: Vec<(Query, bool)>,
    /// Physical reads; the merged one (if any) first.
    physical: Vec<Read>,
    /// For each logical read that is not merged, its physical read.
    own: Vec<Option<usize>>,
}

fn plan<E: EventSet>(reads: Vec<Read>) -> Result<Plan, TypeOutsideSet> {
    let mut logical = Vec::with_capacity(reads.len());
    let mut merged: Option<Query> = None;
    let mut separate = Vec::new();
    let mut own = Vec::with_capacity(reads.len());
    for r in reads {
        let query = restrict_set::<E>(&r.query)?;
        let conflict = r
            .conflict
            .as_ref()
            .map(|q| restrict_set::<E>(q))
            .transpose()?;
        if r.last.is_none() && conflict.is_none() {
            merged = Some(match merged {
                None => query.clone(),
                Some(m) => union(m, &query),
            });
            logical.push((query, true));
            own.push(None);
        } else {
            logical.push((query.clone(), false));
            own.push(Some(separate.len()));
            separate.push(Read {
                query,
                last: r.last,
                conflict,
            });
        }
    }
    let offset = usize::from(merged.is_some());
    let mut physical: Vec<Read> = merged.into_iter().map(Read::new).collect();
    physical.extend(separate);
    let own = own.into_iter().map(|o| o.map(|i| i + offset)).collect();
    Ok(Plan {
        logical,
        physical,
        own,
    })
}

fn union(a: Query, b: &Query) -> Query {
    match (a, b) {
        (Query::All, _) | (_, Query::All) => Query::All,
        (Query::Items(mut items), Query::Items(more)) => {
            for item in more {
                if !items.contains(item) {
                    items.push(item.clone());
                }
            }
            Query::Items(items)
        }
    }
}

impl Runtime {
    /// Runs a command ([`Command`] or [`Decide`]): read, fold, decide, append on condition; on a
    /// conflicting write, re-run the whole cycle with jittered backoff within the command's
    /// [`RetryPolicy`]. Returns the positions and the decision's output.
    pub async fn execute<C: Decide>(
        &self,
        cmd: &C,
        deps: &C::Deps,
    ) -> Result<Executed<C::Output>, CommandError<C::Error>> {
        self.execute_inner(cmd, deps, None, Ids::Fresh).await
    }

    pub(crate) async fn execute_inner<C: Decide>(
        &self,
        cmd: &C,
        deps: &C::Deps,
        tracking: Option<Tracking>,
        ids: Ids,
    ) -> Result<Executed<C::Output>, CommandError<C::Error>> {
        let model = cmd.model();
        let plan = plan::<C::Events>(model.reads())?;
        let policy = cmd.retry();
        let max = policy.max_attempts.max(1);
        let started = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            let mut conditions = Vec::with_capacity(plan.physical.len());
            let mut read: BTreeMap<Position, (SequencedEvent, Vec<bool>)> = BTreeMap::new();
            for (k, r) in plan.physical.iter().enumerate() {
                let mut options = ReadOptions::new();
                if let Some(n) = r.last {
                    options = options.backwards().limit(n);
                }
                let stream = self
                    .store()
                    .read(r.query.clone(), options)
                    .await
                    .map_err(CommandError::Store)?;
                let head = stream.head();
                for e in stream.collect_all().await.map_err(CommandError::Store)? {
                    read.entry(e.position)
                        .or_insert_with(|| (e, vec![false; plan.physical.len()]))
                        .1[k] = true;
                }
                conditions.push(AppendCondition::new(
                    r.conflict.clone().unwrap_or_else(|| r.query.clone()),
                    head,
                ));
            }
            let mut state = model.initial();
            let mut from = vec![false; plan.logical.len()];
            for (stored, physical) in read.into_values() {
                for (i, (query, merged)) in plan.logical.iter().enumerate() {
                    from[i] = if *merged {
                        physical.first() == Some(&true) && query.matches(&stored.event)
                    } else {
                        plan.own[i].is_some_and(|p| physical.get(p) == Some(&true))
                    };
                }
                let decoded = Sequenced::<C::Events>::decode(stored)?;
                model.fold(&mut state, &from, &decoded);
            }
            let ctx = Ctx {
                env: self.env(),
                deps,
                now: self.env().now(),
                attempt,
            };
            let decision = cmd.decide(&state, &ctx).map_err(CommandError::Rejected)?;
            if decision.events.is_empty() {
                return Ok(Executed {
                    positions: Vec::new(),
                    attempts: attempt,
                    replayed: false,
                    output: decision.output,
                });
            }
            let mut batch = Vec::with_capacity(decision.events.len());
            for (i, e) in decision.events.iter().enumerate() {
                let id = match ids {
                    Ids::Fresh => self.env().new_id(),
                    Ids::Derived(base) => Uuid::new_v5(&base, &(i as u64).to_be_bytes()),
                };
                batch.push(e.to_event(id, ctx.now)?);
            }
            let request = AppendRequest {
                events: batch,
                conditions,
                tracking: tracking.clone(),
            };
            match self.store().append_request(request).await {
                Ok(a) => {
                    return Ok(Executed {
                        positions: a.positions,
                        attempts: attempt,
                        replayed: a.replayed,
                        output: decision.output,
                    });
                }
                Err(StoreError::ConditionFailed { condition }) => {
                    tracing::debug!(attempt, condition, "command condition failed, re-running");
                    let elapsed = started.elapsed();
                    if attempt >= max || elapsed >= policy.budget {
                        return Err(CommandError::Contention { attempts: attempt });
                    }
                    let pause = backoff(self.env(), attempt, policy.base_delay, policy.max_delay)
                        .min(policy.budget - elapsed);
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
    }
}
