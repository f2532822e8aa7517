//! `fairway-runtime`: the micromodule framework — commands, live and materialized views,
//! automations, modules and their host, HTTP helpers, metrics and the given/when/then harness.
//!
//! Layer: above the store contract. It builds on the [`dcb_core::EventStore`] trait only and must
//! not depend on any backend (`dcb-embedded`, `dcb-kv`, FoundationDB): a host picks the store and
//! hands it to a [`Runtime`]. Modules depend on this crate, never on a backend.
//!
//! - [`DomainEvent`] (one struct per event, its type and tags declared once) and [`EventSet`]
//!   (the enum of events a reader decodes, declared with [`event_set!`]).
//! - [`Command`]: query, fold, decide, append on condition, re-run on conflict ([`Runtime::execute`]).
//! - [`LiveView`] ([`Runtime::live`]) and [`MaterializedView`] ([`Runtime::catch_up`],
//!   [`Runtime::run_view`], [`Runtime::rebuild`], [`Runtime::wait_for_view`]).
//! - [`Automation`] run by an [`AutomationWorker`]: durable cursor, exactly-once appends through
//!   tracking, retries, dead-letter queue, leases.
//! - [`Module`] and [`Host`]: routes, workers, `/health`, `/metrics`, graceful shutdown.
//! - [`http`]: the JSON error shape and the body extractor.
//! - [`testing`]: `given(..).when(..).then(..)` and friends.
//! - [`idempotency`]: `Idempotency-Key` replay of the first response, stored durably.
//! - [`services`]: what a host provides to modules by type ([`Runtime::service`]): a [`Mailer`],
//!   named [`Secrets`], or anything else.
//!
//! ```
//! use std::sync::Arc;
//! use fairway_runtime::{Command, Ctx, DomainEvent, NewEvent, Runtime, Sequenced, tag};
//! use dcb_core::{MemoryStore, Query};
//!
//! #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! struct Incremented { counter: String }
//! impl DomainEvent for Incremented {
//!     const TYPE: &'static str = "Incremented";
//!     fn tags(&self) -> Vec<String> { vec![tag("counter", &self.counter)] }
//! }
//! fairway_runtime::event_set! { enum CounterEvents { Incremented(Incremented) } }
//!
//! struct Increment { counter: String, max: u32 }
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! #[error("the counter is at its maximum")]
//! struct AtMax;
//! impl fairway_runtime::DomainError for AtMax { fn code(&self) -> &'static str { "at_max" } }
//!
//! impl Command for Increment {
//!     type Events = CounterEvents;
//!     type State = u32;
//!     type Error = AtMax;
//!     type Deps = ();
//!     fn query(&self) -> Query { Query::tagged(tag("counter", &self.counter)) }
//!     fn evolve(n: &mut u32, _: &Sequenced<CounterEvents>) { *n += 1; }
//!     fn decide(&self, n: &u32, _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, AtMax> {
//!         if *n >= self.max { return Err(AtMax) }
//!         Ok(vec![Incremented { counter: self.counter.clone() }.into()])
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let rt = Runtime::new(Arc::new(MemoryStore::new()));
//! let cmd = Increment { counter: "a".into(), max: 1 };
//! assert_eq!(rt.execute(&cmd, &()).await.unwrap().positions.len(), 1);
//! assert!(rt.execute(&cmd, &()).await.unwrap_err().rejection().is_some());
//! # });
//! ```

mod automation;
pub mod check;
mod command;
mod decision;
mod env;
mod event;
pub mod http;
pub mod idempotency;
pub mod lag;
mod lease;
mod metrics;
mod module;
pub mod openapi;
mod runtime;
pub mod services;
mod shutdown;
pub mod testing;
mod view;

pub use automation::{
    Automation, AutomationError, AutomationSettings, AutomationWorker, DeadLetter, RetryEntry,
    StepReport, automation_consumer,
};
pub use command::{
    CONTENTION_RETRY_AFTER_SECS, Command, CommandError, Ctx, DEFAULT_RETRY_BUDGET, DomainError,
    Executed, Read, Rejection, RetryPolicy,
};
pub use decision::{Decide, Decision, DecisionModel, Evolve, Outcome, Projection, StateOf};
pub use env::{Environment, SystemEnv, TestEnv, from_millis, millis, test_epoch};
pub use event::{
    DecodeError, DomainEvent, EncodeError, EventSet, Metadata, NewEvent, RECORDED_AT_KEY, REDACTED,
    SCHEMA_VERSION_KEY, Sequenced, TypeOutsideSet, decode_as, redact, restrict, restrict_set,
    stored_version, tag,
};
/// `#[derive(DomainEvent)]`: `#[event(type = "..")]` on the struct, `#[tag("prefix")]` on
/// tagged fields, `#[event(sensitive)]` on secret ones (see `docs/guide.md`).
pub use fairway_derive::DomainEvent;
pub use lag::{ConsumerKind, ConsumerLag};
pub use lease::{Lease, lease_consumer};
pub use metrics::{AutomationMetrics, Metrics, ViewMetrics};
pub use module::{
    DEFAULT_BODY_LIMIT, ExtraMetrics, Host, Module, ModuleInfo, ModuleKind, RouteInfo,
};
pub use runtime::Runtime;
pub use services::{Email, MailError, Mailer, MemoryMailer, OutboxMailer, Secrets, Services};
pub use shutdown::{Shutdown, ShutdownTrigger, shutdown_channel};
pub use view::{
    LiveState, LiveView, MaterializedView, VIEW_BATCH, VIEW_LEASE_TTL, VIEW_RETRY_AFTER_SECS,
    VIEW_RETRY_DELAY, ViewError, ViewReadGuard, view_consumer,
};

#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}

/// The examples of `docs/guide.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
pub struct GuideDoctests;
