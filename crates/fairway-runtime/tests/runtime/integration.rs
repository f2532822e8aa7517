//! The runtime end to end on the reference store: contention, re-runs, views, automations,
//! leases, dead letters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dcb_core::{Event, EventStore, MemoryStore, Query, ReadOptions};
use fairway_runtime::{
    AutomationWorker, Command, CommandError, Ctx, Environment, NewEvent, Runtime, Sequenced,
    TestEnv, shutdown_channel, tag,
};

use crate::example::*;

fn runtime() -> (Runtime, MemoryStore, Arc<TestEnv>) {
    let store = MemoryStore::new();
    let env = Arc::new(TestEnv::new());
    (
        Runtime::with_env(Arc::new(store.clone()), env.clone()),
        store,
        env,
    )
}

fn reg(id: &str, email: &str) -> RegisterUser {
    RegisterUser {
        user_id: id.into(),
        email: email.into(),
        username: format!("user{id}"),
    }
}

async fn count(store: &dyn EventStore, event_type: &str) -> usize {
    store
        .read(Query::of_type(event_type), ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_email_admit_exactly_one() {
    let (rt, store, _) = runtime();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            let cmd = reg(&i.to_string(), "same@example.com");
            rt.execute(&cmd, &()).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(CommandError::Rejected(RegisterError::EmailTaken(_))) => {}
            Err(CommandError::Contention { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(count(&store, "UserRegistered").await, 1);
}

/// Renames like `ChangeUsername` but calls a hook before deciding, so a test can slip a
/// conflicting write between the read and the append.
struct RacyRename {
    user_id: String,
    username: String,
    attempts: u32,
}

type Hook = Box<dyn Fn(u32) + Send + Sync>;

impl Command for RacyRename {
    type Events = UserEvents;
    type State = Option<String>;
    type Error = ChangeError;
    type Deps = Hook;

    fn query(&self) -> Query {
        Query::tagged(tag("user", &self.user_id))
    }
    fn last(&self) -> Option<u64> {
        Some(1)
    }
    fn evolve(current: &mut Option<String>, e: &Sequenced<UserEvents>) {
        *current = Some(match &e.event {
            UserEvents::UserRegistered(r) => r.username.clone(),
            UserEvents::UsernameChanged(c) => c.username.clone(),
        });
    }
    fn decide(
        &self,
        current: &Option<String>,
        ctx: &Ctx<'_, Hook>,
    ) -> Result<Vec<NewEvent>, ChangeError> {
        (ctx.deps())(ctx.attempt());
        let Some(current) = current else {
            return Err(ChangeError::UnknownUser(self.user_id.clone()));
        };
        Ok(vec![
            UsernameChanged {
                user_id: self.user_id.clone(),
                username: format!("{} (was {current})", self.username),
            }
            .into(),
        ])
    }
    fn retry(&self) -> fairway_runtime::RetryPolicy {
        fairway_runtime::RetryPolicy::attempts(self.attempts)
    }
}

fn interloper(store: MemoryStore, on_attempts: u32) -> Hook {
    Box::new(move |attempt| {
        if attempt <= on_attempts {
            let e = UsernameChanged {
                user_id: "1".into(),
                username: format!("sneaky{attempt}"),
            };
            let event =
                Event::new("UsernameChanged", serde_json::to_vec(&e).unwrap()).tag("user:1");
            futures::executor::block_on(store.append(vec![event], vec![])).unwrap();
        }
    })
}

#[tokio::test]
async fn a_conflicting_write_reruns_the_whole_cycle_even_for_a_backwards_limited_read() {
    let (rt, store, _) = runtime();
    rt.execute(&reg("1", "ada@example.com"), &()).await.unwrap();
    let cmd = RacyRename {
        user_id: "1".into(),
        username: "countess".into(),
        attempts: 5,
    };
    let done = rt
        .execute(&cmd, &interloper(store.clone(), 1))
        .await
        .unwrap();
    assert_eq!(done.attempts, 2);
    let last = store.snapshot().pop().unwrap();
    let data: serde_json::Value = serde_json::from_slice(&last.event.data).unwrap();
    // The second attempt folded the interloper's write.
    assert_eq!(data["username"], "countess (was sneaky1)");
    assert_eq!(Some(last.position), done.last());
}

#[tokio::test]
async fn contention_gives_up_after_the_configured_attempts() {
    let (rt, store, _) = runtime();
    rt.execute(&reg("1", "ada@example.com"), &()).await.unwrap();
    let cmd = RacyRename {
        user_id: "1".into(),
        username: "countess".into(),
        attempts: 3,
    };
    let err = rt
        .execute(&cmd, &interloper(store.clone(), u32::MAX))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Contention { attempts: 3 }),
        "{err:?}"
    );
    assert_eq!(
        count(&store, "UsernameChanged").await,
        3,
        "only the interloper's writes"
    );
}

struct Outside;
impl Command for Outside {
    type Events = UserEvents;
    type State = ();
    type Error = std::convert::Infallible;
    type Deps = ();
    fn query(&self) -> Query {
        Query::of_type("WelcomeEmailSent")
    }
    fn evolve(_: &mut (), _: &Sequenced<UserEvents>) {}
    fn decide(&self, _: &(), _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, std::convert::Infallible> {
        Ok(vec![])
    }
}

#[tokio::test]
async fn a_query_outside_the_event_set_is_a_typed_error() {
    let (rt, _, _) = runtime();
    let err = rt.execute(&Outside, &()).await.unwrap_err();
    assert!(
        matches!(&err, CommandError::Query(t) if t.0 == "WelcomeEmailSent"),
        "{err:?}"
    );
}

#[tokio::test]
async fn handlers_see_position_tags_and_metadata() {
    let (rt, store, env) = runtime();
    let done = rt.execute(&reg("1", "ada@example.com"), &()).await.unwrap();
    let stored = store.snapshot().pop().unwrap();
    let decoded = Sequenced::<UserEvents>::decode(stored).unwrap();
    assert_eq!(Some(decoded.position), done.last());
    assert!(decoded.has_tag("email:ada@example.com"));
    assert_eq!(decoded.metadata.recorded_at, Some(env.now()));
    assert!(decoded.metadata.id.is_some());
}

#[tokio::test]
async fn materialized_view_read_your_writes() {
    let (rt, store, _) = runtime();
    let (trigger, shutdown) = shutdown_channel();
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run_view(Arc::new(Directory), shutdown, "r1").await }
    });
    let done = rt.execute(&reg("1", "ada@example.com"), &()).await.unwrap();
    rt.wait_for_view("directory", done.last().unwrap(), Duration::from_secs(60))
        .await
        .unwrap();
    let entry = rt.view_get(&Directory, "1").await.unwrap().unwrap();
    assert_eq!(entry.email, "ada@example.com");
    // An event the view does not read still counts as processed once the view saw the head.
    let other = store
        .append(vec![Event::new("Unrelated", b"{}".to_vec())], vec![])
        .await
        .unwrap();
    rt.wait_for_view("directory", other.last().unwrap(), Duration::from_secs(60))
        .await
        .unwrap();
    trigger.trigger();
    worker.await.unwrap();
}

#[tokio::test]
async fn wait_for_view_times_out_without_a_worker() {
    let (rt, _, _) = runtime();
    let done = rt.execute(&reg("1", "ada@example.com"), &()).await.unwrap();
    let err = rt
        .wait_for_view("directory", done.last().unwrap(), Duration::from_millis(20))
        .await
        .unwrap_err();
    assert!(
        matches!(err, fairway_runtime::ViewError::Timeout { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn materialized_view_resumes_without_replaying_and_rebuilds() {
    let (rt, store, env) = runtime();
    for i in 0..5 {
        rt.execute(&reg(&i.to_string(), &format!("u{i}@example.com")), &())
            .await
            .unwrap();
    }
    rt.catch_up(&Directory).await.unwrap();
    assert_eq!(
        rt.metrics()
            .view("directory")
            .processed
            .load(Ordering::Relaxed),
        5
    );
    // A new process over the same store: nothing to replay.
    let again = Runtime::with_env(Arc::new(store.clone()), env.clone());
    again.catch_up(&Directory).await.unwrap();
    assert_eq!(
        again
            .metrics()
            .view("directory")
            .processed
            .load(Ordering::Relaxed),
        0
    );
    again
        .execute(
            &ChangeUsername {
                user_id: "3".into(),
                username: "new".into(),
            },
            &(),
        )
        .await
        .unwrap();
    again.catch_up(&Directory).await.unwrap();
    assert_eq!(
        again
            .metrics()
            .view("directory")
            .processed
            .load(Ordering::Relaxed),
        1
    );
    let before = again.view_scan(&Directory, "", None, 100).await.unwrap();
    assert_eq!(before.len(), 5);
    assert_eq!(before[3].1.username, "new");
    // Rebuild from scratch: same read model, every event applied again.
    again.rebuild(&Directory).await.unwrap();
    assert_eq!(
        again.view_scan(&Directory, "", None, 100).await.unwrap(),
        before
    );
    assert_eq!(
        again
            .metrics()
            .view("directory")
            .processed
            .load(Ordering::Relaxed),
        7
    );
    assert_eq!(
        again
            .metrics()
            .view("directory")
            .rebuilds
            .load(Ordering::Relaxed),
        1
    );
}

fn worker(rt: &Runtime, mailer: &Arc<FakeMailer>, replica: &str) -> AutomationWorker<Welcome> {
    AutomationWorker::new(
        rt.clone(),
        Arc::new(Welcome::default()),
        Arc::new(mailer.clone() as Arc<dyn Mailer>),
        replica,
    )
}

#[tokio::test]
async fn automation_appends_and_checkpoints_atomically_and_resumes() {
    let (rt, store, _) = runtime();
    let mailer = Arc::new(FakeMailer::default());
    for i in 0..3 {
        rt.execute(&reg(&i.to_string(), &format!("u{i}@example.com")), &())
            .await
            .unwrap();
    }
    let mut a = worker(&rt, &mailer, "a");
    let report = a.step().await.unwrap();
    assert!(report.leased && report.caught_up);
    assert_eq!(report.processed, 3);
    assert_eq!(mailer.sent().len(), 3);
    assert_eq!(count(&store, "WelcomeEmailSent").await, 3);
    // The checkpoint is the last trigger, moved by the tracked appends.
    let last_trigger = store
        .read(
            Query::of_type("UserRegistered"),
            ReadOptions::new().backwards().limit(1),
        )
        .await
        .unwrap();
    let last_trigger = last_trigger.collect_all().await.unwrap()[0].position;
    assert_eq!(
        store.checkpoint("automation:welcome").await.unwrap(),
        Some(last_trigger)
    );
    // A restarted worker (same replica id) finds nothing left to do.
    drop(a);
    let mut a2 = worker(&rt, &mailer, "a");
    let report = a2.step().await.unwrap();
    assert_eq!(report.processed, 0);
    assert_eq!(mailer.sent().len(), 3);
}

#[tokio::test]
async fn only_the_lease_holder_works_and_an_expired_lease_moves() {
    let (rt, store, env) = runtime();
    let mailer = Arc::new(FakeMailer::default());
    rt.execute(&reg("1", "a@example.com"), &()).await.unwrap();
    let mut a = worker(&rt, &mailer, "a");
    let mut b = worker(&rt, &mailer, "b");
    assert!(a.step().await.unwrap().leased);
    assert!(!b.step().await.unwrap().leased);
    // Replica a dies holding the lease; b waits for it to expire.
    drop(a);
    rt.execute(&reg("2", "b@example.com"), &()).await.unwrap();
    assert!(!b.step().await.unwrap().leased);
    env.advance(Duration::from_secs(3));
    let report = b.step().await.unwrap();
    assert!(report.leased);
    assert_eq!(report.processed, 1);
    assert_eq!(
        mailer.sent(),
        vec!["a@example.com".to_owned(), "b@example.com".to_owned()]
    );
    // a comes back: b's lease is fresh, so a stays idle.
    let mut a = worker(&rt, &mailer, "a");
    assert!(!a.step().await.unwrap().leased);
    assert_eq!(
        rt.metrics()
            .automation("welcome")
            .lease_held
            .load(Ordering::Relaxed),
        0,
        "a's view of the gauge"
    );
    // b shuts down gracefully: its lease is released and a takes over at once.
    b.release().await.unwrap();
    assert!(a.step().await.unwrap().leased);
    assert_eq!(count(&store, "WelcomeEmailSent").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_running_replicas_send_each_email_once() {
    let store = MemoryStore::new();
    let rt = Runtime::new(Arc::new(store.clone()));
    let mailer = Arc::new(FakeMailer::default());
    let (trigger, shutdown) = shutdown_channel();
    let a = tokio::spawn(worker(&rt, &mailer, "a").run(shutdown.clone()));
    let b = tokio::spawn(worker(&rt, &mailer, "b").run(shutdown.clone()));
    for i in 0..20 {
        rt.execute(&reg(&i.to_string(), &format!("u{i}@example.com")), &())
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count(&store, "WelcomeEmailSent").await < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "automation did not finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    trigger.trigger();
    a.await.unwrap();
    b.await.unwrap();
    let mut sent = mailer.sent();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 20);
    assert_eq!(mailer.sent().len(), 20, "no email sent twice");
    assert_eq!(count(&store, "WelcomeEmailSent").await, 20);
}

#[tokio::test]
async fn dead_letters_can_be_listed_replayed_and_purged() {
    let (rt, store, env) = runtime();
    let mailer = Arc::new(FakeMailer::default());
    mailer.broken.lock().unwrap().insert("a@example.com".into());
    mailer.broken.lock().unwrap().insert("c@example.com".into());
    rt.execute(&reg("1", "a@example.com"), &()).await.unwrap();
    rt.execute(&reg("2", "b@example.com"), &()).await.unwrap();
    rt.execute(&reg("3", "c@example.com"), &()).await.unwrap();
    let mut w = worker(&rt, &mailer, "a");
    w.count_queues().await.unwrap();
    for _ in 0..10 {
        w.step().await.unwrap();
        env.advance(Duration::from_secs(1));
    }
    let dead = rt.dead_letters("welcome", None, 100).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        dead.iter().map(|d| d.attempts).collect::<Vec<_>>(),
        vec![3, 3]
    );
    assert_eq!(
        mailer.sent(),
        vec!["b@example.com".to_owned()],
        "the failing triggers did not block b"
    );
    let m = rt.metrics().automation("welcome");
    assert_eq!(m.dlq_size.load(Ordering::Relaxed), 2);
    assert_eq!(
        m.retries.load(Ordering::Relaxed),
        4,
        "two retries for each of two triggers"
    );
    assert!(
        rt.metrics()
            .render()
            .contains("fairway_automation_dlq_size{automation=\"welcome\"} 2")
    );

    // Fix the mailbox of a, replay its dead letter.
    mailer.broken.lock().unwrap().remove("a@example.com");
    assert!(
        rt.replay_dead_letter("welcome", dead[0].position)
            .await
            .unwrap()
    );
    assert!(
        !rt.replay_dead_letter("welcome", dead[0].position)
            .await
            .unwrap(),
        "already moved"
    );
    w.step().await.unwrap();
    assert_eq!(
        mailer.sent(),
        vec!["b@example.com".to_owned(), "a@example.com".to_owned()]
    );
    assert_eq!(
        rt.dead_letters("welcome", None, 100).await.unwrap().len(),
        1
    );
    // Replaying a trigger whose email is already recorded sends nothing (idempotency guard).
    rt.replay_dead_letter("welcome", dead[1].position)
        .await
        .unwrap_or_default();
    assert_eq!(
        rt.purge_dead_letters("welcome", None).await.unwrap(),
        0,
        "c is queued for retry, not dead"
    );
    mailer.broken.lock().unwrap().remove("c@example.com");
    w.step().await.unwrap();
    assert_eq!(mailer.sent().len(), 3);
    assert_eq!(count(&store, "WelcomeEmailSent").await, 3);
    assert!(rt.retry_queue("welcome", 10).await.unwrap().is_empty());
    assert_eq!(m.dlq_size.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn purge_deletes_dead_letters() {
    let (rt, _, env) = runtime();
    let mailer = Arc::new(FakeMailer::default());
    mailer.broken.lock().unwrap().insert("a@example.com".into());
    rt.execute(&reg("1", "a@example.com"), &()).await.unwrap();
    let mut w = worker(&rt, &mailer, "a");
    for _ in 0..10 {
        w.step().await.unwrap();
        env.advance(Duration::from_secs(1));
    }
    let dead = rt.dead_letters("welcome", None, 100).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        rt.purge_dead_letters("welcome", Some(dead[0].position))
            .await
            .unwrap(),
        1
    );
    assert_eq!(rt.purge_dead_letters("welcome", None).await.unwrap(), 0);
    assert!(
        rt.dead_letters("welcome", None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Nothing is left to retry either: the trigger was purged, not lost in the cursor.
    let report = w.step().await.unwrap();
    assert_eq!((report.processed, report.retried), (0, 0));
}

#[tokio::test]
async fn a_retry_after_a_crash_does_not_append_twice() {
    // The first attempt appended (through the deterministic ids) but the worker died before
    // deleting the retry entry: the next attempt must recognise the stored batch.
    let (rt, store, env) = runtime();
    let mailer = Arc::new(FakeMailer::default());
    mailer.fail_first.store(1, Ordering::SeqCst);
    rt.execute(&reg("1", "a@example.com"), &()).await.unwrap();
    let mut w = worker(&rt, &mailer, "a");
    assert_eq!(w.step().await.unwrap().retried, 1);
    // Simulate the crash: someone appends the welcome while the entry stays queued.
    let sent = WelcomeEmailSent {
        user_id: "1".into(),
        email: "a@example.com".into(),
    };
    rt.execute(&Record(sent), &()).await.unwrap();
    env.advance(Duration::from_secs(1));
    let report = w.step().await.unwrap();
    assert_eq!(report.processed, 1);
    assert!(
        mailer.sent().is_empty(),
        "the guard saw the recorded welcome"
    );
    assert_eq!(count(&store, "WelcomeEmailSent").await, 1);
    assert!(rt.retry_queue("welcome", 10).await.unwrap().is_empty());
}

/// Appends one event unconditionally (test helper).
struct Record(WelcomeEmailSent);
impl Command for Record {
    type Events = WelcomeEvents;
    type State = ();
    type Error = std::convert::Infallible;
    type Deps = ();
    fn query(&self) -> Query {
        Query::tagged(tag("user", &self.0.user_id))
    }
    fn evolve(_: &mut (), _: &Sequenced<WelcomeEvents>) {}
    fn decide(&self, _: &(), _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, std::convert::Infallible> {
        Ok(vec![self.0.clone().into()])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_maintains_a_view_and_others_still_read_their_writes() {
    let store = MemoryStore::new();
    let a = Runtime::new(Arc::new(store.clone()));
    let b = Runtime::new(Arc::new(store.clone()));
    let (trigger, shutdown) = shutdown_channel();
    let wa = tokio::spawn({
        let (a, sd) = (a.clone(), shutdown.clone());
        async move { a.run_view(Arc::new(Directory), sd, "a").await }
    });
    let wb = tokio::spawn({
        let (b, sd) = (b.clone(), shutdown.clone());
        async move { b.run_view(Arc::new(Directory), sd, "b").await }
    });
    let mut last = None;
    for i in 0..5 {
        let rt = if i % 2 == 0 { &a } else { &b };
        last = rt
            .execute(&reg(&i.to_string(), &format!("u{i}@example.com")), &())
            .await
            .unwrap()
            .last();
    }
    // Whichever replica holds the lease, both can wait for the last write.
    for rt in [&a, &b] {
        rt.wait_for_view("directory", last.unwrap(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            rt.view_scan(&Directory, "", None, 10).await.unwrap().len(),
            5
        );
    }
    let held = |rt: &Runtime| {
        rt.metrics()
            .view("directory")
            .lease_held
            .load(Ordering::Relaxed)
    };
    assert_eq!(
        held(&a) + held(&b),
        1,
        "exactly one replica maintains the view"
    );
    let processed = |rt: &Runtime| {
        rt.metrics()
            .view("directory")
            .processed
            .load(Ordering::Relaxed)
    };
    assert_eq!(processed(&a) + processed(&b), 5, "each event applied once");
    trigger.trigger();
    wa.await.unwrap();
    wb.await.unwrap();
}

/// A mailer that, while "sending", lets another replica finish the same trigger first.
struct RacingMailer {
    store: MemoryStore,
}

impl Mailer for RacingMailer {
    fn send(&self, _to: &str) -> Result<(), String> {
        let commit = dcb_core::StateCommit {
            consumer: "automation:welcome".into(),
            writes: vec![],
            checkpoint: Some(dcb_core::Position::from_u64(1)),
            ..Default::default()
        };
        futures::executor::block_on(self.store.commit_state(commit)).map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn a_replica_overtaken_on_a_trigger_is_fenced_and_appends_nothing() {
    let (rt, store, _) = runtime();
    rt.execute(&reg("1", "a@example.com"), &()).await.unwrap();
    let mailer: Arc<dyn Mailer> = Arc::new(RacingMailer {
        store: store.clone(),
    });
    let mut w = AutomationWorker::new(
        rt.clone(),
        Arc::new(Welcome::default()),
        Arc::new(mailer),
        "a",
    );
    let report = w.step().await.unwrap();
    assert!(report.leased);
    assert_eq!(report.processed, 0);
    assert_eq!(
        count(&store, "WelcomeEmailSent").await,
        0,
        "the tracked append was rejected"
    );
    assert_eq!(
        rt.metrics()
            .automation("welcome")
            .lease_held
            .load(Ordering::Relaxed),
        0,
        "lease dropped"
    );
    assert!(rt.retry_queue("welcome", 10).await.unwrap().is_empty());
}
