//! Lag, defined once (`fairway_runtime::lag`): the events matching a consumer's query after its
//! checkpoint. `Host::lags` and `GET /metrics` give the same exact numbers for a materialized
//! view and an automation: behind, after the automation's own output, after unrelated events.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use dcb_core::{Event, EventStore, MemoryStore};
use fairway_runtime::{AutomationWorker, ConsumerKind, ConsumerLag, Host, Runtime, TestEnv};
use tower::ServiceExt as _;

use crate::example::*;

fn reg(id: &str) -> RegisterUser {
    RegisterUser {
        user_id: id.into(),
        email: format!("{id}@example.com"),
        username: format!("user{id}"),
    }
}

/// `(directory lag, welcome lag)` from `Host::lags`.
async fn lags(host: &Host) -> (u64, u64) {
    let all = host.lags().await.unwrap();
    let find = |kind, name: &str| -> &ConsumerLag {
        all.iter()
            .find(|l| l.kind == kind && l.name == name)
            .unwrap_or_else(|| panic!("no {name} in {all:?}"))
    };
    (
        find(ConsumerKind::View, "directory").lag,
        find(ConsumerKind::Automation, "welcome").lag,
    )
}

/// `(directory lag, welcome lag)` from `GET /metrics`.
async fn scraped(host: &Host) -> (u64, u64) {
    let res = host
        .router()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    (
        value(r#"fairway_view_lag{view="directory"}"#),
        value(r#"fairway_automation_lag{automation="welcome"}"#),
    )
}

async fn unrelated(store: &MemoryStore, n: usize) {
    for _ in 0..n {
        store
            .append(vec![Event::new("SomethingElse", b"{}".to_vec())], vec![])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn lag_counts_only_the_events_a_consumer_still_has_to_process() {
    let store = MemoryStore::new();
    let rt = Runtime::with_env(Arc::new(store.clone()), Arc::new(TestEnv::new()));
    let mailer = Arc::new(FakeMailer::default());
    let host = Host::new(rt.clone(), vec![module(mailer.clone())]);

    // Nothing yet; then unrelated events only: nothing to process.
    assert_eq!(lags(&host).await, (0, 0));
    unrelated(&store, 3).await;
    assert_eq!(lags(&host).await, (0, 0));
    assert_eq!(scraped(&host).await, (0, 0));

    // Two registrations: both consumers read them.
    rt.execute(&reg("a"), &()).await.unwrap();
    rt.execute(&reg("b"), &()).await.unwrap();
    unrelated(&store, 2).await;
    assert_eq!(lags(&host).await, (2, 2));
    assert_eq!(scraped(&host).await, (2, 2));

    // The automation processes both and appends two WelcomeEmailSent: it does not trigger on
    // its own output (0), the directory reads it (2 registrations + 2 emails).
    let mut worker = AutomationWorker::new(
        rt.clone(),
        Arc::new(Welcome::default()),
        Arc::new(mailer.clone() as Arc<dyn Mailer>),
        "r1",
    );
    let report = worker.step().await.unwrap();
    assert_eq!(report.processed, 2, "{report:?}");
    assert_eq!(mailer.sent().len(), 2);
    assert_eq!(lags(&host).await, (4, 0));
    assert_eq!(scraped(&host).await, (4, 0));

    // The view catches up; more unrelated events change nothing.
    rt.catch_up(&Directory).await.unwrap();
    unrelated(&store, 5).await;
    assert_eq!(lags(&host).await, (0, 0));
    assert_eq!(scraped(&host).await, (0, 0));
}
