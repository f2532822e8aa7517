//! Checks against the store on disk (after the server is gone) and against the views (while it
//! runs): every acknowledged write is stored, and no invariant of the three apps is broken.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use dcb_core::{EventStore, Position, Query, ReadOptions, SequencedEvent};
use dcb_embedded::EmbeddedStore;
use serde_json::Value;

use crate::client::Client;
use crate::workload::{Ack, Op};

/// Why a check could not run (as opposed to a violation it found).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] dcb_core::StoreError),
    /// A view request failed.
    #[error("view: {0}")]
    View(String),
}

/// The state the events describe, and what broke.
#[derive(Debug, Default, Clone)]
pub struct Model {
    /// Events in the store.
    pub events: usize,
    /// The head.
    pub head: Option<Position>,
    /// Acknowledged writes found in the store.
    pub acks_verified: usize,
    /// Books each borrower holds, in borrow order.
    pub holdings: BTreeMap<String, Vec<String>>,
    /// Lists: item id -> done.
    pub lists: BTreeMap<String, BTreeMap<String, bool>>,
    /// Registered users.
    pub users: BTreeSet<String>,
    /// `WelcomeEmailSent` events per user.
    pub welcomed: BTreeMap<String, usize>,
    /// Broken invariants and missing acknowledged writes.
    pub violations: Vec<String>,
}

fn field<'a>(data: &'a Value, name: &str) -> &'a str {
    data[name].as_str().unwrap_or("")
}

/// Folds the events into a [`Model`], recording every broken invariant.
pub fn model(events: &[SequencedEvent]) -> Model {
    let mut m = Model {
        events: events.len(),
        head: events.last().map(|e| e.position),
        ..Model::default()
    };
    let mut holder: HashMap<String, String> = HashMap::new();
    let mut usernames: HashMap<String, String> = HashMap::new();
    let mut emails: HashMap<String, String> = HashMap::new();
    for e in events {
        let data: Value = serde_json::from_slice(&e.event.data).unwrap_or(Value::Null);
        let at = e.position;
        match e.event.event_type.as_str() {
            "BookBorrowed" => {
                let (book, who) = (field(&data, "bookId"), field(&data, "borrowerId"));
                if let Some(h) = holder.get(book) {
                    m.violations
                        .push(format!("{at}: {book} borrowed by {who} while {h} holds it"));
                }
                holder.insert(book.to_owned(), who.to_owned());
                let held = m.holdings.entry(who.to_owned()).or_default();
                held.push(book.to_owned());
                if held.len() > 5 {
                    m.violations
                        .push(format!("{at}: {who} holds {} books", held.len()));
                }
            }
            "BookReturned" => {
                let (book, who) = (field(&data, "bookId"), field(&data, "borrowerId"));
                if holder.get(book).map(String::as_str) != Some(who) {
                    m.violations.push(format!(
                        "{at}: {book} returned by {who}, who does not hold it"
                    ));
                }
                holder.remove(book);
                if let Some(held) = m.holdings.get_mut(who) {
                    held.retain(|b| b != book);
                }
            }
            "UserRegistered" => {
                let (id, name, email) = (
                    field(&data, "userId"),
                    field(&data, "username"),
                    field(&data, "email"),
                );
                if !m.users.insert(id.to_owned()) {
                    m.violations
                        .push(format!("{at}: user {id} registered twice"));
                }
                if let Some(other) = usernames.insert(name.to_owned(), id.to_owned()) {
                    m.violations.push(format!(
                        "{at}: username {name} of {id} already held by {other}"
                    ));
                }
                if let Some(other) = emails.insert(email.to_owned(), id.to_owned()) {
                    m.violations.push(format!(
                        "{at}: email {email} of {id} already held by {other}"
                    ));
                }
            }
            "WelcomeEmailSent" => {
                let id = field(&data, "userId");
                if !m.users.contains(id) {
                    m.violations
                        .push(format!("{at}: welcome email for unknown user {id}"));
                }
                let n = m.welcomed.entry(id.to_owned()).or_default();
                *n += 1;
                if *n > 1 {
                    m.violations
                        .push(format!("{at}: welcome email recorded {n} times for {id}"));
                }
            }
            "ListCreated" => {
                let list = field(&data, "listId");
                if m.lists.insert(list.to_owned(), BTreeMap::new()).is_some() {
                    m.violations
                        .push(format!("{at}: list {list} created twice"));
                }
            }
            "ItemAdded" => {
                let (list, item) = (field(&data, "listId"), field(&data, "itemId"));
                match m.lists.get_mut(list) {
                    None => m
                        .violations
                        .push(format!("{at}: item {item} added to missing list {list}")),
                    Some(items) => {
                        if items.insert(item.to_owned(), false).is_some() {
                            m.violations
                                .push(format!("{at}: item {list}/{item} added twice"));
                        }
                    }
                }
            }
            "ItemCompleted" => {
                let (list, item) = (field(&data, "listId"), field(&data, "itemId"));
                match m.lists.get_mut(list).and_then(|l| l.get_mut(item)) {
                    None => m
                        .violations
                        .push(format!("{at}: missing item {list}/{item} completed")),
                    Some(done) => {
                        if *done {
                            m.violations
                                .push(format!("{at}: item {list}/{item} completed twice"));
                        }
                        *done = true;
                    }
                }
            }
            _ => {}
        }
    }
    m
}

fn ack_matches(op: &Op, e: &SequencedEvent) -> bool {
    if Some(e.event.event_type.as_str()) != op.event_type() {
        return false;
    }
    let data: Value = serde_json::from_slice(&e.event.data).unwrap_or(Value::Null);
    let f = |n: &str| field(&data, n).to_owned();
    match op {
        Op::CreateList { list } => f("listId") == *list,
        Op::AddItem { list, item } | Op::CompleteItem { list, item } => {
            f("listId") == *list && f("itemId") == *item
        }
        Op::Borrow { book, borrower } | Op::Return { book, borrower } => {
            f("bookId") == *book && f("borrowerId") == *borrower
        }
        Op::Register {
            id,
            username,
            email,
        } => f("userId") == *id && f("username") == *username && f("email") == *email,
        Op::GetList { .. } | Op::Borrowed { .. } => false,
    }
}

/// Checks every acknowledged write against the events: at its position when the response named
/// one, otherwise anywhere.
pub fn verify_acks(events: &[SequencedEvent], acks: &[Ack], m: &mut Model) {
    let by_position: HashMap<Position, &SequencedEvent> =
        events.iter().map(|e| (e.position, e)).collect();
    for ack in acks {
        if ack.op.event_type().is_none() {
            continue;
        }
        let found = match ack.position {
            Some(p) => by_position.get(&p).is_some_and(|e| ack_matches(&ack.op, e)),
            None => events.iter().any(|e| ack_matches(&ack.op, e)),
        };
        if found {
            m.acks_verified += 1;
        } else {
            m.violations.push(format!(
                "acknowledged {:?} at {:?} is not in the store",
                ack.op, ack.position
            ));
        }
    }
}

/// Opens the store of a stopped server's data directory, reads every event, checks the
/// acknowledged writes and the invariants. The store is closed again before returning.
pub async fn verify_store(data_dir: &Path, acks: &[Ack]) -> Result<Model, CheckError> {
    let events = {
        let store = EmbeddedStore::open(data_dir.join("store"))?;
        store
            .read(Query::All, ReadOptions::new())
            .await?
            .collect_all()
            .await?
    };
    let mut m = model(&events);
    verify_acks(&events, acks, &mut m);
    Ok(m)
}

/// Emails in the outbox file, per idempotency key.
pub fn outbox(data_dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(data_dir.join("outbox.jsonl")) else {
        return out;
    };
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        if let Some(k) = v["idempotency_key"].as_str() {
            *out.entry(k.to_owned()).or_default() += 1;
        }
    }
    out
}

/// Compares the views of a running server with the model: each list's items and their state,
/// each borrower's books. Returns the number of view reads compared; mismatches are pushed to
/// `violations`.
pub async fn verify_views(
    client: &Client,
    m: &Model,
    violations: &mut Vec<String>,
) -> Result<usize, CheckError> {
    let after = m.head.map(|p| format!("?after={p}")).unwrap_or_default();
    let mut compared = 0;
    for (list, items) in &m.lists {
        let r = client
            .get(&format!("/api/lists/{list}{after}"))
            .await
            .map_err(|e| CheckError::View(e.to_string()))?;
        compared += 1;
        if r.status != 200 {
            violations.push(format!("GET list {list}: {} {:?}", r.status, r.json()));
            continue;
        }
        let body = r.json();
        let seen: BTreeMap<String, bool> = body["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        (
                            i["id"].as_str().unwrap_or("").to_owned(),
                            i["done"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if &seen != items {
            violations.push(format!("list {list}: view {seen:?}, events {items:?}"));
        }
    }
    for b in 0..crate::workload::BORROWERS {
        let who = format!("p{b}");
        let r = client
            .get(&format!("/api/borrowers/{who}/books{after}"))
            .await
            .map_err(|e| CheckError::View(e.to_string()))?;
        compared += 1;
        if r.status != 200 {
            violations.push(format!("GET books of {who}: {} {:?}", r.status, r.json()));
            continue;
        }
        let mut seen: Vec<String> = r.json()["books"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| b.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut want = m.holdings.get(&who).cloned().unwrap_or_default();
        seen.sort();
        want.sort();
        if seen != want {
            violations.push(format!("books of {who}: view {seen:?}, events {want:?}"));
        }
    }
    Ok(compared)
}
