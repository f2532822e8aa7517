//! Automation faults: a handler that fails N times then succeeds, one that always fails, one
//! that is slow and then reports a timeout, and one that panics. Retries, backoff and the
//! dead-letter queue must behave as documented in ARCHITECTURE-runtime.md ("Automations"), no
//! trigger may block the ones behind it, and the host keeps serving HTTP throughout.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dcb_core::{EventStore, MemoryStore, Query};
use fairway_runtime::{
    Automation, AutomationSettings, AutomationWorker, Command, Ctx, DomainError, DomainEvent,
    Environment, Host, Module, ModuleKind, NewEvent, Runtime, Sequenced, TestEnv, shutdown_channel,
    tag,
};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

// ---- a tiny job domain ----

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobQueued {
    job: String,
}
impl DomainEvent for JobQueued {
    const TYPE: &'static str = "JobQueued";
    fn tags(&self) -> Vec<String> {
        vec![tag("job", &self.job)]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobDone {
    job: String,
    attempt: u32,
}
impl DomainEvent for JobDone {
    const TYPE: &'static str = "JobDone";
    fn tags(&self) -> Vec<String> {
        vec![tag("job", &self.job)]
    }
}

fairway_runtime::event_set! { enum Triggers { JobQueued(JobQueued) } }
fairway_runtime::event_set! { enum Done { JobDone(JobDone) } }

/// What the handler does for a job, chosen by the job's name prefix.
#[derive(Debug, Default)]
struct Behaviour {
    calls: Mutex<HashMap<String, u32>>,
    /// Calls that blocked, for the slow handler.
    slow_calls: AtomicU32,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
struct JobFailed(String);
impl DomainError for JobFailed {
    fn code(&self) -> &'static str {
        "job_failed"
    }
}

impl Behaviour {
    /// `ok-*` succeeds; `fail<N>-*` fails N times then succeeds; `never-*` always fails;
    /// `slow-*` blocks 300 ms then reports a timeout; `panic<N>-*` panics N times then succeeds.
    fn run(&self, job: &str) -> Result<u32, JobFailed> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(job.to_owned()).or_default();
            *n += 1;
            *n
        };
        let times = |prefix: &str| -> u32 {
            job[prefix.len()..]
                .split('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        if job.starts_with("ok") {
            Ok(call)
        } else if job.starts_with("fail") {
            if call <= times("fail") {
                Err(JobFailed(format!("transient failure {call}")))
            } else {
                Ok(call)
            }
        } else if job.starts_with("never") {
            Err(JobFailed("permanent failure".into()))
        } else if job.starts_with("slow") {
            self.slow_calls.fetch_add(1, Ordering::SeqCst);
            // A blocking client with its own timeout (e.g. SMTP), as a sync mailer would be.
            std::thread::sleep(Duration::from_millis(300));
            Err(JobFailed("mail server timed out after 300 ms".into()))
        } else if job.starts_with("panic") {
            if call <= times("panic") {
                panic!("handler bug on {job}");
            }
            Ok(call)
        } else {
            Err(JobFailed(format!("unknown job {job}")))
        }
    }

    fn calls(&self, job: &str) -> u32 {
        self.calls.lock().unwrap().get(job).copied().unwrap_or(0)
    }
}

struct RunJob {
    job: String,
}

impl Command for RunJob {
    type Events = Done;
    type State = bool;
    type Error = JobFailed;
    type Deps = Arc<Behaviour>;
    fn query(&self) -> Query {
        Query::tagged(tag("job", &self.job))
    }
    fn evolve(done: &mut bool, _: &Sequenced<Done>) {
        *done = true;
    }
    fn decide(
        &self,
        done: &bool,
        ctx: &Ctx<'_, Arc<Behaviour>>,
    ) -> Result<Vec<NewEvent>, JobFailed> {
        if *done {
            return Ok(Vec::new());
        }
        let attempt = ctx.deps().run(&self.job)?;
        Ok(vec![
            JobDone {
                job: self.job.clone(),
                attempt,
            }
            .into(),
        ])
    }
}

struct Jobs {
    settings: AutomationSettings,
}

impl Automation for Jobs {
    type Trigger = Triggers;
    type Command = RunJob;
    fn name(&self) -> &str {
        "jobs"
    }
    fn command(&self, trigger: &Sequenced<Triggers>) -> Option<RunJob> {
        let Triggers::JobQueued(q) = &trigger.event;
        Some(RunJob { job: q.job.clone() })
    }
    fn settings(&self) -> AutomationSettings {
        self.settings
    }
}

fn settings(max_attempts: u32, base: Duration) -> AutomationSettings {
    AutomationSettings {
        max_attempts,
        base_delay: base,
        max_delay: base * 64,
        lease_ttl: Duration::from_secs(5),
        batch: 100,
        poll_interval: Duration::from_millis(20),
    }
}

struct Queue;
impl Command for Queue {
    type Events = Triggers;
    type State = ();
    type Error = std::convert::Infallible;
    type Deps = Vec<String>;
    fn query(&self) -> Query {
        Query::tagged("never-read")
    }
    fn evolve(_: &mut (), _: &Sequenced<Triggers>) {}
    fn decide(
        &self,
        _: &(),
        ctx: &Ctx<'_, Vec<String>>,
    ) -> Result<Vec<NewEvent>, std::convert::Infallible> {
        Ok(ctx
            .deps()
            .iter()
            .map(|job| JobQueued { job: job.clone() }.into())
            .collect())
    }
}

async fn queue(rt: &Runtime, jobs: &[&str]) {
    let jobs: Vec<String> = jobs.iter().map(|j| (*j).to_owned()).collect();
    rt.execute(&Queue, &jobs).await.unwrap();
}

async fn done(store: &dyn EventStore) -> Vec<JobDone> {
    store
        .read(Query::of_type("JobDone"), dcb_core::ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_slice(&e.event.data).unwrap())
        .collect()
}

fn ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn test_runtime() -> (Runtime, MemoryStore, Arc<TestEnv>) {
    let store = MemoryStore::new();
    let env = Arc::new(TestEnv::new());
    (
        Runtime::with_env(Arc::new(store.clone()), env.clone()),
        store,
        env,
    )
}

/// Fails 3 times then succeeds: each retry is scheduled with exponential backoff with equal
/// jitter (attempt n waits between base*2^(n-1)/2 and base*2^(n-1)), nothing runs before it is
/// due, the job behind it is not blocked, and the success clears the retry queue.
#[tokio::test]
async fn fails_n_times_then_succeeds_with_documented_backoff() {
    let (rt, store, env) = test_runtime();
    let behaviour = Arc::new(Behaviour::default());
    let base = Duration::from_secs(1);
    let mut w = AutomationWorker::new(
        rt.clone(),
        Arc::new(Jobs {
            settings: settings(5, base),
        }),
        Arc::new(behaviour.clone()),
        "r1",
    );
    queue(&rt, &["fail3-a", "ok-b"]).await;

    let r = w.step().await.unwrap();
    assert_eq!((r.processed, r.retried, r.dead_lettered), (1, 1, 0));
    assert_eq!(
        done(&store).await.len(),
        1,
        "ok-b is not blocked by fail3-a"
    );
    for attempt in 1..=3u32 {
        let queue = rt.retry_queue("jobs", 10).await.unwrap();
        assert_eq!(queue.len(), 1);
        let entry = &queue[0];
        assert_eq!(entry.attempts, attempt);
        assert_eq!(
            entry.last_error,
            format!("rejected: transient failure {attempt}")
        );
        let now = ms(env.now());
        let full = 1000u64 << (attempt - 1);
        let delay = entry.next_at_ms - now;
        assert!(
            delay >= full / 2 && delay <= full,
            "attempt {attempt}: delay {delay} ms outside [{}, {full}]",
            full / 2
        );
        // Not due yet: a step does nothing.
        env.advance(Duration::from_millis(delay - 1));
        let r = w.step().await.unwrap();
        assert_eq!((r.processed, r.retried), (0, 0));
        assert_eq!(behaviour.calls("fail3-a"), attempt);
        env.advance(Duration::from_millis(1));
        let r = w.step().await.unwrap();
        assert_eq!(behaviour.calls("fail3-a"), attempt + 1);
        if attempt < 3 {
            assert_eq!((r.processed, r.retried), (0, 1));
        } else {
            assert_eq!((r.processed, r.retried), (1, 0));
        }
    }
    assert!(rt.retry_queue("jobs", 10).await.unwrap().is_empty());
    assert!(rt.dead_letters("jobs", None, 10).await.unwrap().is_empty());
    let mut jobs: Vec<(String, u32)> = done(&store)
        .await
        .into_iter()
        .map(|d| (d.job, d.attempt))
        .collect();
    jobs.sort();
    assert_eq!(jobs, vec![("fail3-a".into(), 4), ("ok-b".into(), 1)]);
    let m = rt.metrics().automation("jobs");
    assert_eq!(m.retries.load(Ordering::Relaxed), 3);
    assert_eq!(m.retry_queue.load(Ordering::Relaxed), 0);
}

/// Always fails: after `max_attempts` attempts it is a dead letter carrying the last error; the
/// retry queue is empty; replaying it after a fix runs it once more with a fresh budget.
#[tokio::test]
async fn always_failing_is_dead_lettered_after_max_attempts_and_replayable() {
    let (rt, store, env) = test_runtime();
    let behaviour = Arc::new(Behaviour::default());
    let mut w = AutomationWorker::new(
        rt.clone(),
        Arc::new(Jobs {
            settings: settings(3, Duration::from_millis(100)),
        }),
        Arc::new(behaviour.clone()),
        "r1",
    );
    queue(&rt, &["never-x", "fail1-y"]).await;
    let mut dead = 0;
    for _ in 0..20 {
        let r = w.step().await.unwrap();
        dead += r.dead_lettered;
        env.advance(Duration::from_secs(10));
    }
    assert_eq!(dead, 1);
    assert_eq!(
        behaviour.calls("never-x"),
        3,
        "exactly max_attempts attempts"
    );
    assert_eq!(behaviour.calls("fail1-y"), 2);
    let letters = rt.dead_letters("jobs", None, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].error, "rejected: permanent failure");
    assert!(rt.retry_queue("jobs", 10).await.unwrap().is_empty());
    assert_eq!(done(&store).await.len(), 1);
    let m = rt.metrics().automation("jobs");
    assert_eq!(m.dead_lettered.load(Ordering::Relaxed), 1);
    assert_eq!(m.dlq_size.load(Ordering::Relaxed), 1);

    // Replay: back in the retry queue with attempts 0, due now; it fails again (3 more tries).
    assert!(
        rt.replay_dead_letter("jobs", letters[0].position)
            .await
            .unwrap()
    );
    for _ in 0..10 {
        w.step().await.unwrap();
        env.advance(Duration::from_secs(10));
    }
    assert_eq!(behaviour.calls("never-x"), 6);
    assert_eq!(rt.dead_letters("jobs", None, 10).await.unwrap().len(), 1);
    assert_eq!(rt.purge_dead_letters("jobs", None).await.unwrap(), 1);
    assert_eq!(
        rt.metrics()
            .automation("jobs")
            .dlq_size
            .load(Ordering::Relaxed),
        0
    );
}

async fn health_ms(router: &axum::Router) -> (StatusCode, u128) {
    let t = Instant::now();
    let resp = router
        .clone()
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    (resp.status(), t.elapsed().as_millis())
}

fn host(rt: &Runtime, behaviour: &Arc<Behaviour>, settings: AutomationSettings) -> Host {
    let module = Module::new(ModuleKind::Automation, "jobs")
        .automation(Jobs { settings }, behaviour.clone());
    Host::new(rt.clone(), vec![module]).replica("r1")
}

async fn wait_for(what: &str, secs: u64, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("timed out waiting for {what}");
    false
}

/// A slow handler that ends in a timeout error is an ordinary failure: retried with backoff,
/// dead-lettered after max_attempts, the jobs behind it done meanwhile, and `/health` answers
/// promptly while the handler blocks its worker thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_timing_out_is_retried_and_the_host_keeps_serving() {
    let store = MemoryStore::new();
    let rt = Runtime::new(Arc::new(store.clone()));
    let behaviour = Arc::new(Behaviour::default());
    let host = host(&rt, &behaviour, settings(3, Duration::from_millis(50)));
    let router = host.router();
    let (trigger, shutdown) = shutdown_channel();
    let workers = host.spawn_workers(shutdown);
    queue(&rt, &["slow-1", "ok-2", "ok-3"]).await;
    let mut worst = 0;
    let finished = wait_for("the slow job to be dead-lettered", 20, async || {
        let (status, took) = health_ms(&router).await;
        assert_eq!(status, StatusCode::OK);
        worst = worst.max(took);
        rt.dead_letters("jobs", None, 10).await.unwrap().len() == 1
    })
    .await;
    assert!(finished);
    assert_eq!(behaviour.slow_calls.load(Ordering::SeqCst), 3);
    assert_eq!(done(&store).await.len(), 2, "ok-2 and ok-3 were done");
    let letter = &rt.dead_letters("jobs", None, 10).await.unwrap()[0];
    assert!(letter.error.contains("timed out"), "{}", letter.error);
    assert!(
        worst < 250,
        "/health took {worst} ms while a handler blocked"
    );
    trigger.trigger();
    for w in workers {
        w.await.unwrap();
    }
}

/// A handler that panics once must count as a failed attempt like any other: retried, then
/// done; the triggers behind it are processed; the worker survives.
///
/// The bug it pins: the panic used to unwind through `AutomationWorker::step` and end the worker
/// task, stopping the automation for good. The worker now catches it as a failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_panicking_handler_kills_the_automation_worker() {
    let store = MemoryStore::new();
    let rt = Runtime::new(Arc::new(store.clone()));
    let behaviour = Arc::new(Behaviour::default());
    let host = host(&rt, &behaviour, settings(3, Duration::from_millis(20)));
    let router = host.router();
    let (trigger, shutdown) = shutdown_channel();
    let workers = host.spawn_workers(shutdown);
    queue(&rt, &["panic1-a", "ok-b"]).await;
    let all_done = wait_for("both jobs to be done", 5, async || {
        done(&store).await.len() == 2
    })
    .await;
    // The host answers whatever happened to the worker.
    assert_eq!(health_ms(&router).await.0, StatusCode::OK);
    let panicked = workers.iter().any(|w| w.is_finished());
    trigger.trigger();
    for w in workers {
        let _ = w.await;
    }
    assert!(
        !panicked,
        "the automation worker task ended (panicked) while the host was running"
    );
    assert!(all_done, "jobs done: {:?}", done(&store).await);
    assert_eq!(
        behaviour.calls("panic1-a"),
        2,
        "one panic, one successful retry"
    );
}
