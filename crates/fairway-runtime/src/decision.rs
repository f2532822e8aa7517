//! Decision models (dcb.events' "decision model"): small reusable projections, each a query and a
//! fold, combined into one read and one append condition; and [`Decide`], the command trait whose
//! decision gets their typed states and may return a value besides its events.

use std::fmt;
use std::sync::Arc;

use dcb_core::Query;

use crate::command::{Command, Ctx, DomainError, Read, RetryPolicy};
use crate::event::{EventSet, NewEvent, Sequenced};

/// What a decision returns: the events to append and a value for the caller (an invoice number,
/// a generated id), handed back by [`Runtime::execute`](crate::Runtime::execute) in
/// [`Executed::output`](crate::Executed::output) together with the positions.
#[derive(Debug)]
pub struct Decision<T = ()> {
    /// The events to append (none: nothing is appended, and the output is still returned).
    pub events: Vec<NewEvent>,
    /// The value handed back to the caller.
    pub output: T,
}

impl<T> Decision<T> {
    /// Append `events` and hand back `output`.
    pub fn new(events: Vec<NewEvent>, output: T) -> Decision<T> {
        Decision { events, output }
    }
}

impl Decision<()> {
    /// Append `events`; no output.
    pub fn events(events: Vec<NewEvent>) -> Decision<()> {
        Decision { events, output: () }
    }
}

impl From<Vec<NewEvent>> for Decision<()> {
    fn from(events: Vec<NewEvent>) -> Decision<()> {
        Decision::events(events)
    }
}

type Fold<E, S> = Arc<dyn Fn(&mut S, &Sequenced<E>) + Send + Sync>;

/// A small, reusable projection: a query and a fold of the matching events into a typed state.
///
/// Define them once in a context's events crate as functions of the ids they are about, and
/// combine them in commands (a tuple of projections is a [`DecisionModel`]):
///
/// ```
/// use fairway_runtime::{DomainEvent, Projection, tag};
/// use dcb_core::Query;
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct Subscribed { course: String, student: String }
/// # impl DomainEvent for Subscribed { const TYPE: &'static str = "Subscribed"; fn tags(&self) -> Vec<String> { vec![tag("course", &self.course), tag("student", &self.student)] } }
/// fairway_runtime::event_set! { pub enum CourseEvents { Subscribed(Subscribed) } }
///
/// /// How many students a course has.
/// pub fn subscriptions_of(course: &str) -> Projection<CourseEvents, u32> {
///     Projection::new(Query::tagged(tag("course", course)), 0, |n, _| *n += 1)
/// }
/// assert_eq!(subscriptions_of("c1").query(), &Query::tagged("course:c1"));
/// ```
pub struct Projection<E, S> {
    query: Query,
    last: Option<u64>,
    initial: S,
    fold: Fold<E, S>,
}

impl<E, S: Clone> Clone for Projection<E, S> {
    fn clone(&self) -> Self {
        Projection {
            query: self.query.clone(),
            last: self.last,
            initial: self.initial.clone(),
            fold: self.fold.clone(),
        }
    }
}

impl<E, S: fmt::Debug> fmt::Debug for Projection<E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Projection")
            .field("query", &self.query)
            .field("last", &self.last)
            .field("initial", &self.initial)
            .finish_non_exhaustive()
    }
}

impl<E: EventSet, S: Clone + Send + Sync + 'static> Projection<E, S> {
    /// Folds every event matching `query` (restricted to the event set's types), oldest first,
    /// into a state starting at `initial`.
    pub fn new(
        query: Query,
        initial: S,
        fold: impl Fn(&mut S, &Sequenced<E>) + Send + Sync + 'static,
    ) -> Projection<E, S> {
        Projection {
            query,
            last: None,
            initial,
            fold: Arc::new(fold),
        }
    }

    /// Folds only the last `n` matching events (read backwards with a limit, its own read and
    /// condition): e.g. `last(1)` for "what is the latest status of this order".
    pub fn last(mut self, n: u64) -> Projection<E, S> {
        self.last = Some(n);
        self
    }

    /// The projection's query.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Folds `events` from the initial state (for unit tests of a projection and for views that
    /// reuse it).
    pub fn fold_all<'a>(&self, events: impl IntoIterator<Item = &'a Sequenced<E>>) -> S {
        let mut state = self.initial.clone();
        for e in events {
            (self.fold)(&mut state, e);
        }
        state
    }
}

/// Several projections read and decided on together: one combined read (the union of their
/// queries, one append condition), each matching event folded into every projection whose query
/// it matches. Implemented for a single [`Projection`] and for tuples of up to eight.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a decision model over `{E}`",
    note = "use a `fairway_runtime::Projection<{E}, _>` or a tuple of them, all over the command's `Events`"
)]
pub trait DecisionModel<E: EventSet>: Send + Sync + 'static {
    /// The states the decision gets (a tuple for a tuple of projections).
    type State: Send;

    /// The reads the model needs (the runtime merges those without `last` into one).
    fn reads(&self) -> Vec<Read>;

    /// The states before any event.
    fn initial(&self) -> Self::State;

    /// Folds one event (oldest first) into the projections it concerns: `from[i]` says whether
    /// the event belongs to read `i` of [`DecisionModel::reads`] (it matches that read's query
    /// and, for a `last(n)` read, is among the last `n`).
    fn fold(&self, state: &mut Self::State, from: &[bool], event: &Sequenced<E>);
}

impl<E: EventSet, S: Clone + Send + Sync + 'static> DecisionModel<E> for Projection<E, S> {
    type State = S;

    fn reads(&self) -> Vec<Read> {
        let read = Read::new(self.query.clone());
        vec![match self.last {
            Some(n) => read.last(n),
            None => read,
        }]
    }

    fn initial(&self) -> S {
        self.initial.clone()
    }

    fn fold(&self, state: &mut S, from: &[bool], event: &Sequenced<E>) {
        if from.first() == Some(&true) {
            (self.fold)(state, event);
        }
    }
}

macro_rules! tuple_model {
    ($($s:ident $i:tt),+) => {
        impl<E: EventSet, $($s: Clone + Send + Sync + 'static),+> DecisionModel<E>
            for ($(Projection<E, $s>,)+)
        {
            type State = ($($s,)+);

            fn reads(&self) -> Vec<Read> {
                let mut reads = Vec::new();
                $(reads.extend(DecisionModel::<E>::reads(&self.$i));)+
                reads
            }

            fn initial(&self) -> Self::State {
                ($(self.$i.initial.clone(),)+)
            }

            fn fold(&self, state: &mut Self::State, from: &[bool], event: &Sequenced<E>) {
                $(DecisionModel::<E>::fold(
                    &self.$i,
                    &mut state.$i,
                    from.get($i..).unwrap_or_default(),
                    event,
                );)+
            }
        }
    };
}

tuple_model!(S0 0);
tuple_model!(S0 0, S1 1);
tuple_model!(S0 0, S1 1, S2 2);
tuple_model!(S0 0, S1 1, S2 2, S3 3);
tuple_model!(S0 0, S1 1, S2 2, S3 3, S4 4);
tuple_model!(S0 0, S1 1, S2 2, S3 3, S4 4, S5 5);
tuple_model!(S0 0, S1 1, S2 2, S3 3, S4 4, S5 5, S6 6);
tuple_model!(S0 0, S1 1, S2 2, S3 3, S4 4, S5 5, S6 6, S7 7);

/// The single-state model of a [`Command`]: its reads (`query` with `last` and
/// `conflict_query`, plus `more_reads`) folded by its `evolve`.
pub struct Evolve<C: Command> {
    reads: Vec<Read>,
    _command: std::marker::PhantomData<fn() -> C>,
}

impl<C: Command> fmt::Debug for Evolve<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evolve")
            .field("reads", &self.reads)
            .finish()
    }
}

impl<C: Command> DecisionModel<C::Events> for Evolve<C> {
    type State = C::State;

    fn reads(&self) -> Vec<Read> {
        self.reads.clone()
    }

    fn initial(&self) -> C::State {
        C::State::default()
    }

    fn fold(&self, state: &mut C::State, _: &[bool], event: &Sequenced<C::Events>) {
        C::evolve(state, event);
    }
}

/// What [`Runtime::execute`](crate::Runtime::execute) returns for command `C`.
pub type Outcome<C> = Result<
    crate::command::Executed<<C as Decide>::Output>,
    crate::command::CommandError<<C as Decide>::Error>,
>;

/// The decision state a [`Decide`] command gets.
pub type StateOf<C> = <<C as Decide>::Model as DecisionModel<<C as Decide>::Events>>::State;

/// A command whose decision is made on a [`DecisionModel`] and may hand back a value.
///
/// Every [`Command`] is a `Decide` (its model is its `query`/`more_reads` folded by `evolve`, its
/// output `()`), so [`Runtime::execute`](crate::Runtime::execute), the harness and HTTP
/// handlers take either. Implement `Decide` directly for a decision spanning several boundaries
/// (a tuple of projections) or returning a value:
///
/// ```
/// use fairway_runtime::{Ctx, Decide, Decision, DomainEvent, Projection, tag};
/// use dcb_core::Query;
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct Numbered { number: u64 }
/// # impl DomainEvent for Numbered { const TYPE: &'static str = "Numbered"; fn tags(&self) -> Vec<String> { vec!["invoices".into()] } }
/// fairway_runtime::event_set! { pub enum InvoiceEvents { Numbered(Numbered) } }
///
/// fn last_number() -> Projection<InvoiceEvents, u64> {
///     Projection::new(Query::tagged("invoices"), 0, |n, e| match &e.event {
///         InvoiceEvents::Numbered(x) => *n = x.number,
///     })
///     .last(1)
/// }
///
/// struct Next;
/// impl Decide for Next {
///     type Events = InvoiceEvents;
///     type Model = Projection<InvoiceEvents, u64>;
///     type Output = u64;
///     type Error = std::convert::Infallible;
///     type Deps = ();
///     fn model(&self) -> Self::Model { last_number() }
///     fn decide(&self, last: &u64, _: &Ctx<'_, ()>) -> Result<Decision<u64>, Self::Error> {
///         Ok(Decision::new(vec![Numbered { number: last + 1 }.into()], last + 1))
///     }
/// }
///
/// fairway_runtime::testing::given([Numbered { number: 1 }])
///     .when(Next)
///     .then_output([Numbered { number: 2 }], 2);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Fairway command",
    note = "implement `fairway_runtime::Command` (one state, `evolve`) or `fairway_runtime::Decide` (a decision model of projections)"
)]
pub trait Decide: Send + Sync + 'static {
    /// The events it reads (its queries are restricted to these types).
    type Events: EventSet;
    /// The projections the decision needs.
    type Model: DecisionModel<Self::Events>;
    /// What `decide` hands back besides the events (`()` when nothing).
    type Output: fmt::Debug + Send + 'static;
    /// The business rejection.
    type Error: DomainError;
    /// Services the decision uses; `()` when none.
    type Deps: Send + Sync + 'static;

    /// The decision model: a projection or a tuple of them, built from the command's ids.
    fn model(&self) -> Self::Model;

    /// The events to append and the output, or a rejection.
    fn decide(
        &self,
        state: &StateOf<Self>,
        ctx: &Ctx<'_, Self::Deps>,
    ) -> Result<Decision<Self::Output>, Self::Error>;

    /// How long to keep re-running on conflicting writes, and the backoff between attempts.
    fn retry(&self) -> RetryPolicy {
        RetryPolicy::default()
    }
}

impl<C: Command> Decide for C {
    type Events = C::Events;
    type Model = Evolve<C>;
    type Output = ();
    type Error = C::Error;
    type Deps = C::Deps;

    fn model(&self) -> Evolve<C> {
        let mut reads = vec![Read {
            query: Command::query(self),
            last: Command::last(self),
            conflict: Command::conflict_query(self),
        }];
        reads.extend(Command::more_reads(self));
        Evolve {
            reads,
            _command: std::marker::PhantomData,
        }
    }

    fn decide(&self, state: &C::State, ctx: &Ctx<'_, C::Deps>) -> Result<Decision<()>, C::Error> {
        Command::decide(self, state, ctx).map(Decision::events)
    }

    fn retry(&self) -> RetryPolicy {
        Command::retry(self)
    }
}
