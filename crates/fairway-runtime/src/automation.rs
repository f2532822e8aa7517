//! Automations: watch trigger events, map each to a command, run it, with a durable cursor,
//! retries, a dead-letter queue and leases shared by host replicas.
//!
//! Storage (all in the store's consumer state):
//! - consumer `automation:{name}`: its checkpoint is the cursor over triggers; keys
//!   `retry/{position as 24 hex digits}` hold [`RetryEntry`]s, `dlq/{...}` hold [`DeadLetter`]s.
//! - consumer `lease:automation:{name}`: the lease replicas compete for (see [`crate::Lease`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dcb_core::{Position, Query, ReadOptions, SequencedEvent, StateCommit, StoreError, Tracking};
use futures::FutureExt;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::command::{Command, CommandError, Ids};
use crate::env::{backoff, millis};
use crate::event::{EventSet, Sequenced, TypeOutsideSet, restrict_set};
use crate::lease::{LeaseError, LeaseKeeper};
use crate::metrics::AutomationMetrics;
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;

/// Namespace of the ids derived for events an automation appends (name, trigger position, index).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_2a7e_8b3d_4e6f_9a0b_1c2d_3e4f_5a6b);

/// Retry, lease and batching settings of one automation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutomationSettings {
    /// Attempts per trigger before it goes to the dead-letter queue (at least 1).
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt (with jitter).
    pub base_delay: Duration,
    /// Retry delay cap.
    pub max_delay: Duration,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Triggers (and due retries) handled per step.
    pub batch: u64,
    /// Longest idle wait between steps.
    pub poll_interval: Duration,
}

impl Default for AutomationSettings {
    fn default() -> Self {
        AutomationSettings {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            lease_ttl: Duration::from_secs(15),
            batch: 100,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Watches trigger events and maps each to a command.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an automation",
    note = "implement `fairway_runtime::Automation`: `Trigger`, `Command`, `name`, `command`"
)]
pub trait Automation: Send + Sync + 'static {
    /// The trigger events.
    type Trigger: EventSet;
    /// The command each trigger becomes.
    type Command: Command;
    /// A stable name (it names the automation's storage).
    fn name(&self) -> &str;
    /// Which events trigger it (`Query::All` = every event of the trigger set).
    fn query(&self) -> Query {
        Query::All
    }
    /// The command for a trigger, or `None` to skip it.
    fn command(&self, trigger: &Sequenced<Self::Trigger>) -> Option<Self::Command>;
    /// Retries, leases, batching.
    fn settings(&self) -> AutomationSettings {
        AutomationSettings::default()
    }
}

/// A trigger waiting for another attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryEntry {
    /// The trigger's position.
    pub position: Position,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time (ms since the Unix epoch).
    pub next_at_ms: u64,
    /// The last failure.
    pub last_error: String,
}

/// A trigger that failed every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The trigger's position.
    pub position: Position,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// When it was dead-lettered (ms since the Unix epoch).
    pub failed_at_ms: u64,
}

/// Why an automation step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AutomationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The trigger query names a type outside the trigger set.
    #[error(transparent)]
    Query(#[from] TypeOutsideSet),
    /// A stored entry could not be decoded.
    #[error("corrupted automation state: {0}")]
    State(String),
}

impl From<LeaseError> for AutomationError {
    fn from(e: LeaseError) -> AutomationError {
        match e {
            LeaseError::Store(s) => AutomationError::Store(s),
            LeaseError::Corrupted(m) => AutomationError::State(m),
        }
    }
}

/// What one [`AutomationWorker::step`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// This replica held the lease (nothing was done otherwise).
    pub leased: bool,
    /// Triggers handled (command appended, appended nothing, or skipped).
    pub processed: usize,
    /// Failed attempts scheduled for a retry.
    pub retried: usize,
    /// Triggers moved to the dead-letter queue.
    pub dead_lettered: usize,
    /// No trigger was left after this step's batch.
    pub caught_up: bool,
    /// The head the trigger read saw.
    pub head: Option<Position>,
    /// When the earliest pending retry is due (ms since the Unix epoch).
    pub next_retry_ms: Option<u64>,
}

/// The consumer holding an automation's cursor, retries and dead letters.
pub fn automation_consumer(name: &str) -> String {
    format!("automation:{name}")
}

fn entry_key(prefix: &str, position: Position) -> Vec<u8> {
    format!("{prefix}{:024x}", position.get()).into_bytes()
}

const RETRY: &str = "retry/";
const DLQ: &str = "dlq/";

enum Handled {
    /// Done; the checkpoint was advanced with the append when `tracked` was set.
    Appended,
    /// Done without an append (nothing decided, skipped, or already stored).
    NoAppend,
    /// Another replica advanced the cursor first: the lease is lost.
    Fenced,
    /// The attempt failed.
    Failed(String),
}

/// Runs one automation on one replica: lease, due retries, new triggers.
pub struct AutomationWorker<A: Automation> {
    rt: Runtime,
    automation: Arc<A>,
    deps: Arc<<A::Command as Command>::Deps>,
    settings: AutomationSettings,
    metrics: Arc<AutomationMetrics>,
    lease: LeaseKeeper,
}

impl<A: Automation> std::fmt::Debug for AutomationWorker<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutomationWorker")
            .field("automation", &self.automation.name())
            .field("replica", &self.lease.replica())
            .finish_non_exhaustive()
    }
}

impl<A: Automation> AutomationWorker<A> {
    /// A worker for `automation`, whose commands get `deps`, running as replica `replica`.
    pub fn new(
        rt: Runtime,
        automation: Arc<A>,
        deps: Arc<<A::Command as Command>::Deps>,
        replica: impl Into<String>,
    ) -> AutomationWorker<A> {
        let settings = automation.settings();
        let metrics = rt.metrics().automation(automation.name());
        let lease = LeaseKeeper::new(
            &automation_consumer(automation.name()),
            replica.into(),
            settings.lease_ttl,
            metrics.gauge_lease(),
        );
        AutomationWorker {
            rt,
            automation,
            deps,
            settings,
            metrics,
            lease,
        }
    }

    fn consumer(&self) -> String {
        automation_consumer(self.automation.name())
    }

    fn now_ms(&self) -> u64 {
        millis(self.rt.env().now())
    }

    fn lose_lease(&mut self) {
        self.lease.lose();
    }

    /// Acquires or renews the lease; `false` when another replica holds it.
    pub async fn ensure_lease(&mut self) -> Result<bool, AutomationError> {
        self.lease
            .ensure(&self.rt)
            .await
            .map_err(AutomationError::from)
    }

    /// Gives the lease up (on graceful shutdown) so another replica takes over at once.
    pub async fn release(&mut self) -> Result<(), AutomationError> {
        self.lease
            .release(&self.rt)
            .await
            .map_err(AutomationError::from)
    }

    async fn handle(&self, stored: SequencedEvent, tracking: Option<Tracking>) -> Handled {
        let position = stored.position;
        let trigger = match Sequenced::<A::Trigger>::decode(stored) {
            Ok(t) => t,
            Err(e) => return Handled::Failed(e.to_string()),
        };
        let Some(cmd) = self.automation.command(&trigger) else {
            return Handled::NoAppend;
        };
        let base = Uuid::new_v5(
            &ID_NAMESPACE,
            format!("{}/{}", self.automation.name(), position).as_bytes(),
        );
        let tracked = tracking.is_some();
        // A panicking command (a bug in a decision or a service) fails this trigger like any
        // error: it is retried, then dead-lettered; the worker and the other triggers go on.
        let run = self
            .rt
            .execute_inner(&cmd, &self.deps, tracking, Ids::Derived(base));
        let outcome = match std::panic::AssertUnwindSafe(run).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                tracing::error!(automation = self.automation.name(), %position, panic = %message, "automation command panicked");
                return Handled::Failed(format!("panicked: {message}"));
            }
        };
        match outcome {
            Ok(ex) if ex.positions.is_empty() || ex.replayed => Handled::NoAppend,
            Ok(_) if tracked => Handled::Appended,
            Ok(_) => Handled::NoAppend,
            Err(CommandError::Store(StoreError::CheckpointConflict { .. })) => Handled::Fenced,
            // The ids derived from this trigger are stored: an earlier attempt appended.
            Err(CommandError::Store(StoreError::IdConflict { .. })) => Handled::NoAppend,
            Err(e) => Handled::Failed(e.to_string()),
        }
    }

    /// One pass: lease, then due retries, then up to `batch` new triggers.
    pub async fn step(&mut self) -> Result<StepReport, AutomationError> {
        let mut report = StepReport::default();
        if !self.ensure_lease().await? {
            return Ok(report);
        }
        report.leased = true;
        let consumer = self.consumer();
        let query = restrict_set::<A::Trigger>(&self.automation.query())?;
        self.run_retries(&query, &mut report).await?;

        let store = self.rt.store_arc();
        let mut committed = store.checkpoint(&consumer).await?;
        let mut stream = store
            .read(
                query,
                ReadOptions::new()
                    .after_opt(committed)
                    .limit(self.settings.batch),
            )
            .await?;
        report.head = stream.head();
        let mut pending: Option<Position> = None;
        let mut n = 0u64;
        while let Some(stored) = stream.next().await {
            let stored = stored?;
            n += 1;
            let position = stored.position;
            self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
            let handled = self
                .handle(
                    stored,
                    Some(Tracking {
                        consumer: consumer.clone(),
                        position,
                    }),
                )
                .await;
            self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
            match handled {
                Handled::Appended => {
                    committed = Some(position);
                    pending = None;
                    report.processed += 1;
                    self.metrics.processed.fetch_add(1, Ordering::Relaxed);
                }
                Handled::NoAppend => {
                    pending = Some(position);
                    report.processed += 1;
                    self.metrics.processed.fetch_add(1, Ordering::Relaxed);
                }
                Handled::Fenced => {
                    self.lose_lease();
                    return Ok(report);
                }
                Handled::Failed(error) => {
                    tracing::warn!(%position, %error, attempt = 1, "trigger failed");
                    let entry = RetryEntry {
                        position,
                        attempts: 1,
                        next_at_ms: self.next_at(1),
                        last_error: error,
                    };
                    let (key, value) = (entry_key(RETRY, position), encode(&entry)?);
                    let commit = StateCommit {
                        consumer: consumer.clone(),
                        writes: vec![(key, Some(value))],
                        checkpoint: Some(position),
                        ..Default::default()
                    };
                    if !self.commit_fenced(commit).await? {
                        return Ok(report);
                    }
                    committed = Some(position);
                    pending = None;
                    self.note_retry(&mut report, entry.next_at_ms, true);
                    if self.settings.max_attempts <= 1 {
                        self.dead_letter(entry, &mut report).await?;
                    }
                }
            }
        }
        if let Some(p) = pending
            && Some(p) > committed
        {
            let commit = StateCommit {
                consumer: consumer.clone(),
                writes: Vec::new(),
                checkpoint: Some(p),
                ..Default::default()
            };
            if !self.commit_fenced(commit).await? {
                return Ok(report);
            }
        }
        report.caught_up = n < self.settings.batch;
        Ok(report)
    }

    fn next_at(&self, attempts: u32) -> u64 {
        let delay = backoff(
            self.rt.env(),
            attempts,
            self.settings.base_delay,
            self.settings.max_delay,
        );
        self.now_ms()
            .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
    }

    fn note_retry(&self, report: &mut StepReport, next_at_ms: u64, new_entry: bool) {
        report.retried += 1;
        self.metrics.retries.fetch_add(1, Ordering::Relaxed);
        if new_entry {
            self.metrics.retry_queue.fetch_add(1, Ordering::Relaxed);
        }
        report.next_retry_ms = Some(
            report
                .next_retry_ms
                .map_or(next_at_ms, |t| t.min(next_at_ms)),
        );
    }

    /// Commits; `false` (and the lease dropped) when another replica moved the cursor first.
    async fn commit_fenced(&mut self, commit: StateCommit) -> Result<bool, AutomationError> {
        match self.rt.store().commit_state(commit).await {
            Ok(()) => Ok(true),
            Err(StoreError::CheckpointConflict { .. }) => {
                self.lose_lease();
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn dead_letter(
        &self,
        entry: RetryEntry,
        report: &mut StepReport,
    ) -> Result<(), AutomationError> {
        tracing::error!(position = %entry.position, attempts = entry.attempts, error = %entry.last_error, "trigger dead-lettered");
        let letter = DeadLetter {
            position: entry.position,
            attempts: entry.attempts,
            error: entry.last_error,
            failed_at_ms: self.now_ms(),
        };
        let writes = vec![
            (entry_key(DLQ, entry.position), Some(encode(&letter)?)),
            (entry_key(RETRY, entry.position), None),
        ];
        self.rt
            .store()
            .commit_state(StateCommit {
                consumer: self.consumer(),
                writes,
                checkpoint: None,
                ..Default::default()
            })
            .await?;
        report.dead_lettered += 1;
        self.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.metrics.dlq_size.fetch_add(1, Ordering::Relaxed);
        self.metrics.retry_queue.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    async fn run_retries(
        &mut self,
        query: &Query,
        report: &mut StepReport,
    ) -> Result<(), AutomationError> {
        let consumer = self.consumer();
        let limit = usize::try_from(self.settings.batch).unwrap_or(usize::MAX);
        let entries = self
            .rt
            .store()
            .scan_state(&consumer, RETRY.as_bytes(), None, limit)
            .await?;
        let now = self.now_ms();
        for (key, raw) in entries {
            let mut entry: RetryEntry = decode(&raw)?;
            if entry.next_at_ms > now {
                report.next_retry_ms = Some(
                    report
                        .next_retry_ms
                        .map_or(entry.next_at_ms, |t| t.min(entry.next_at_ms)),
                );
                continue;
            }
            let options = ReadOptions::new().from(entry.position).limit(1);
            let found = self
                .rt
                .store()
                .read(query.clone(), options)
                .await?
                .collect_all()
                .await?;
            let handled = match found.into_iter().next() {
                Some(e) if e.position == entry.position => {
                    self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
                    let h = self.handle(e, None).await;
                    self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
                    h
                }
                _ => Handled::Failed(format!("trigger at {} not found", entry.position)),
            };
            match handled {
                Handled::Appended | Handled::NoAppend => {
                    let commit = StateCommit {
                        consumer: consumer.clone(),
                        writes: vec![(key, None)],
                        checkpoint: None,
                        ..Default::default()
                    };
                    self.rt.store().commit_state(commit).await?;
                    report.processed += 1;
                    self.metrics.processed.fetch_add(1, Ordering::Relaxed);
                    self.metrics.retry_queue.fetch_sub(1, Ordering::Relaxed);
                }
                Handled::Fenced => {
                    self.lose_lease();
                    return Ok(());
                }
                Handled::Failed(error) => {
                    entry.attempts += 1;
                    entry.last_error = error;
                    tracing::warn!(position = %entry.position, attempt = entry.attempts, error = %entry.last_error, "trigger failed again");
                    if entry.attempts >= self.settings.max_attempts {
                        self.dead_letter(entry, report).await?;
                    } else {
                        entry.next_at_ms = self.next_at(entry.attempts);
                        let commit = StateCommit {
                            consumer: consumer.clone(),
                            writes: vec![(key, Some(encode(&entry)?))],
                            checkpoint: None,
                            ..Default::default()
                        };
                        self.rt.store().commit_state(commit).await?;
                        self.note_retry(report, entry.next_at_ms, false);
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs steps until `shutdown`, waiting for new events, due retries or lease renewal in
    /// between; releases the lease on the way out.
    pub async fn run(mut self, shutdown: Shutdown) {
        let span = tracing::info_span!("automation", name = self.automation.name(), replica = %self.lease.replica());
        async move {
            if let Err(e) = self.count_queues().await {
                tracing::warn!(error = %e, "cannot count the retry and dead-letter queues");
            }
            while !shutdown.is_set() {
                let poll = self.settings.poll_interval;
                match self.step().await {
                    Ok(r) if r.leased && !r.caught_up => continue,
                    Ok(r) => {
                        let mut wait = poll.min(self.settings.lease_ttl / 3);
                        if let Some(due) = r.next_retry_ms {
                            wait =
                                wait.min(Duration::from_millis(due.saturating_sub(self.now_ms())));
                        }
                        let store = self.rt.store_arc();
                        tokio::select! {
                            _ = store.wait_for_head(r.head), if r.leased => {}
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.wait() => {}
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "automation step failed");
                        tokio::select! {
                            _ = tokio::time::sleep(poll) => {}
                            _ = shutdown.wait() => {}
                        }
                    }
                }
            }
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "cannot release the lease");
            }
        }
        .instrument(span)
        .await
    }

    /// Sets the queue-size gauges from storage (at start).
    pub async fn count_queues(&self) -> Result<(), AutomationError> {
        let retry = count(&self.rt, &self.consumer(), RETRY).await?;
        let dlq = count(&self.rt, &self.consumer(), DLQ).await?;
        self.metrics.retry_queue.store(retry, Ordering::Relaxed);
        self.metrics.dlq_size.store(dlq, Ordering::Relaxed);
        Ok(())
    }
}

async fn count(rt: &Runtime, consumer: &str, prefix: &str) -> Result<i64, StoreError> {
    let mut n = 0i64;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = rt
            .store()
            .scan_state(consumer, prefix.as_bytes(), after.as_deref(), 1000)
            .await?;
        n += i64::try_from(page.len()).unwrap_or(i64::MAX);
        match page.last() {
            Some((k, _)) if page.len() == 1000 => after = Some(k.clone()),
            _ => return Ok(n),
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, AutomationError> {
    serde_json::to_vec(value).map_err(|e| AutomationError::State(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, AutomationError> {
    serde_json::from_slice(raw).map_err(|e| AutomationError::State(e.to_string()))
}

impl Runtime {
    /// Up to `limit` dead letters of `automation`, oldest trigger first, after `after`.
    pub async fn dead_letters(
        &self,
        automation: &str,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, AutomationError> {
        let after = after.map(|p| entry_key(DLQ, p));
        let rows = self
            .store()
            .scan_state(
                &automation_consumer(automation),
                DLQ.as_bytes(),
                after.as_deref(),
                limit,
            )
            .await?;
        rows.iter().map(|(_, v)| decode(v)).collect()
    }

    /// The triggers of `automation` waiting for a retry.
    pub async fn retry_queue(
        &self,
        automation: &str,
        limit: usize,
    ) -> Result<Vec<RetryEntry>, AutomationError> {
        let rows = self
            .store()
            .scan_state(
                &automation_consumer(automation),
                RETRY.as_bytes(),
                None,
                limit,
            )
            .await?;
        rows.iter().map(|(_, v)| decode(v)).collect()
    }

    /// Moves a dead letter back to the retry queue, due now, with a fresh attempt budget.
    /// `false` when there is no such dead letter.
    pub async fn replay_dead_letter(
        &self,
        automation: &str,
        position: Position,
    ) -> Result<bool, AutomationError> {
        let consumer = automation_consumer(automation);
        let key = entry_key(DLQ, position);
        let Some(raw) = self.store().get_state(&consumer, &key).await? else {
            return Ok(false);
        };
        let letter: DeadLetter = decode(&raw)?;
        let entry = RetryEntry {
            position,
            attempts: 0,
            next_at_ms: millis(self.env().now()),
            last_error: letter.error,
        };
        let writes = vec![
            (key, None),
            (entry_key(RETRY, position), Some(encode(&entry)?)),
        ];
        self.store()
            .commit_state(StateCommit {
                consumer,
                writes,
                checkpoint: None,
                ..Default::default()
            })
            .await?;
        let m = self.metrics().automation(automation);
        m.dlq_size.fetch_sub(1, Ordering::Relaxed);
        m.retry_queue.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Deletes one dead letter (`Some(position)`) or all of them (`None`); returns how many.
    pub async fn purge_dead_letters(
        &self,
        automation: &str,
        position: Option<Position>,
    ) -> Result<usize, AutomationError> {
        let consumer = automation_consumer(automation);
        let keys: Vec<Vec<u8>> = match position {
            Some(p) => {
                let key = entry_key(DLQ, p);
                if self.store().get_state(&consumer, &key).await?.is_some() {
                    vec![key]
                } else {
                    Vec::new()
                }
            }
            None => {
                let mut keys = Vec::new();
                let mut after: Option<Vec<u8>> = None;
                loop {
                    let page = self
                        .store()
                        .scan_state(&consumer, DLQ.as_bytes(), after.as_deref(), 1000)
                        .await?;
                    let full = page.len() == 1000;
                    after = page.last().map(|(k, _)| k.clone());
                    keys.extend(page.into_iter().map(|(k, _)| k));
                    if !full {
                        break keys;
                    }
                }
            }
        };
        let n = keys.len();
        for chunk in keys.chunks(1000) {
            let writes = chunk.iter().map(|k| (k.clone(), None)).collect();
            self.store()
                .commit_state(StateCommit {
                    consumer: consumer.clone(),
                    writes,
                    checkpoint: None,
                    ..Default::default()
                })
                .await?;
        }
        self.metrics()
            .automation(automation)
            .dlq_size
            .fetch_sub(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
        Ok(n)
    }
}
