//! Restart tests on the durable embedded backend: views and automations resume from their
//! stored checkpoints after the process (the store handle) goes away.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use dcb_core::{Query, ReadOptions};
use dcb_embedded::EmbeddedStore;
use fairway_runtime::{AutomationWorker, Runtime, TestEnv};

use crate::example::*;

fn open(dir: &std::path::Path, env: &Arc<TestEnv>) -> Runtime {
    Runtime::with_env(Arc::new(EmbeddedStore::open(dir).unwrap()), env.clone())
}

fn reg(i: u32) -> RegisterUser {
    RegisterUser {
        user_id: i.to_string(),
        email: format!("u{i}@example.com"),
        username: format!("user{i}"),
    }
}

async fn count(rt: &Runtime, event_type: &str) -> usize {
    rt.store()
        .read(Query::of_type(event_type), ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .len()
}

fn worker(rt: &Runtime, mailer: &Arc<FakeMailer>) -> AutomationWorker<Welcome> {
    AutomationWorker::new(
        rt.clone(),
        Arc::new(Welcome::default()),
        Arc::new(mailer.clone() as Arc<dyn Mailer>),
        "a",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_and_automation_resume_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = Arc::new(TestEnv::new());
    let mailer = Arc::new(FakeMailer::default());
    {
        let rt = open(dir.path(), &env);
        for i in 0..4 {
            rt.execute(&reg(i), &()).await.unwrap();
        }
        let mut w = worker(&rt, &mailer);
        assert_eq!(w.step().await.unwrap().processed, 4);
        w.release().await.unwrap();
        rt.catch_up(&Directory).await.unwrap();
        assert_eq!(
            rt.metrics()
                .view("directory")
                .processed
                .load(Ordering::Relaxed),
            8
        );
    }
    assert_eq!(mailer.sent().len(), 4);
    {
        // Reopen: the view's model and both checkpoints survived; nothing is replayed.
        let rt = open(dir.path(), &env);
        assert_eq!(
            rt.view_get(&Directory, "2")
                .await
                .unwrap()
                .unwrap()
                .username,
            "user2"
        );
        rt.catch_up(&Directory).await.unwrap();
        assert_eq!(
            rt.metrics()
                .view("directory")
                .processed
                .load(Ordering::Relaxed),
            0
        );
        let mut w = worker(&rt, &mailer);
        assert_eq!(w.step().await.unwrap().processed, 0);
        assert_eq!(
            mailer.sent().len(),
            4,
            "no email sent twice after a restart"
        );
        // New work after the restart is picked up.
        rt.execute(&reg(9), &()).await.unwrap();
        assert_eq!(w.step().await.unwrap().processed, 1);
        rt.catch_up(&Directory).await.unwrap();
        assert_eq!(
            rt.metrics()
                .view("directory")
                .processed
                .load(Ordering::Relaxed),
            2,
            "registered + welcomed"
        );
        assert_eq!(count(&rt, "WelcomeEmailSent").await, 5);
        assert!(
            rt.view_get(&Directory, "9")
                .await
                .unwrap()
                .unwrap()
                .welcomed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_dead_letters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = Arc::new(TestEnv::new());
    let mailer = Arc::new(FakeMailer::default());
    mailer
        .broken
        .lock()
        .unwrap()
        .insert("u1@example.com".into());
    {
        let rt = open(dir.path(), &env);
        rt.execute(&reg(1), &()).await.unwrap();
        let mut w = worker(&rt, &mailer);
        assert_eq!(w.step().await.unwrap().retried, 1);
        // The process dies with the trigger queued for a retry (lease not released).
    }
    env.advance(std::time::Duration::from_secs(10));
    {
        let rt = open(dir.path(), &env);
        assert_eq!(rt.retry_queue("welcome", 10).await.unwrap().len(), 1);
        let mut w = worker(&rt, &mailer);
        w.count_queues().await.unwrap();
        for _ in 0..5 {
            w.step().await.unwrap();
            env.advance(std::time::Duration::from_secs(1));
        }
        assert_eq!(rt.dead_letters("welcome", None, 10).await.unwrap().len(), 1);
    }
    {
        let rt = open(dir.path(), &env);
        let dead = rt.dead_letters("welcome", None, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        mailer.broken.lock().unwrap().clear();
        assert!(
            rt.replay_dead_letter("welcome", dead[0].position)
                .await
                .unwrap()
        );
        let mut w = worker(&rt, &mailer);
        env.advance(std::time::Duration::from_secs(60));
        w.step().await.unwrap();
        assert_eq!(mailer.sent(), vec!["u1@example.com".to_owned()]);
        assert_eq!(count(&rt, "WelcomeEmailSent").await, 1);
        assert!(
            rt.dead_letters("welcome", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
