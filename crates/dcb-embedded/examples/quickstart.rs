//! A runnable tour of the embedded store: append, decide on a read, append on condition, see a
//! concurrent decision rejected, read by tag, reopen.
//!
//! `cargo run --release -p dcb-embedded --example quickstart [DATA_DIR]`
#![allow(clippy::unwrap_used)]

use dcb_core::{AppendCondition, Event, EventStore, Query, QueryItem, ReadOptions, StoreError};
use dcb_embedded::EmbeddedStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), StoreError> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./fairway-data/quickstart".into());
    let store = EmbeddedStore::open(&dir)?;
    println!("opened {dir}: {:?}", store.stats());

    // A decision: "a username may be claimed once". Read what the decision depends on...
    let username = format!("ada-{}", store.stats().events);
    let query = Query::item(
        QueryItem::new()
            .r#type("UsernameClaimed")
            .tag(format!("username:{username}")),
    );
    let read = store.read(query.clone(), ReadOptions::new()).await?;
    let head = read.head();
    let seen = read.collect_all().await?;
    println!("decision read {} events at head {head:?}", seen.len());

    // ...then append on condition that nothing matching appeared after that head.
    let claim = Event::new(
        "UsernameClaimed",
        format!(r#"{{"username":"{username}"}}"#).into_bytes(),
    )
    .tag(format!("username:{username}"));
    let ok = store
        .append(
            vec![claim.clone()],
            vec![AppendCondition::new(query.clone(), head)],
        )
        .await?;
    println!("claimed {username} at position {}", ok.positions[0]);

    // A second decision made on the same (now stale) read is rejected.
    match store
        .append(vec![claim], vec![AppendCondition::new(query.clone(), head)])
        .await
    {
        Err(StoreError::ConditionFailed { condition }) => {
            println!("stale decision rejected (condition {condition})")
        }
        other => println!("unexpected: {other:?}"),
    }

    let all = store
        .read(
            Query::of_type("UsernameClaimed"),
            ReadOptions::new().backwards().limit(3),
        )
        .await?;
    for e in all.collect_all().await? {
        println!(
            "  {} {} {}",
            e.position,
            e.event.event_type,
            String::from_utf8_lossy(&e.event.data)
        );
    }
    Ok(())
}
