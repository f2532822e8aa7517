//! Operator commands on the data directory: `events`, `dlq`, `views rebuild`, `status`. They
//! open the store themselves, so they run while the server is stopped (the embedded store
//! allows one process at a time).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use dcb_core::{
    EventStore, Position, Query, QueryItem, ReadOptions, SequencedEvent, SubscriptionItem,
};
use fairway_runtime::{ConsumerKind, Host, Runtime, view_consumer};
use futures::StreamExt as _;
use serde::Serialize;

use crate::modules;
use crate::store::{self, Backend, Opened};

/// Which events `fairway events` prints.
#[derive(Debug, Clone, Args)]
pub struct EventFilter {
    /// Only events of this type (repeat for several: any of them).
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Only events carrying this tag (repeat for several: all of them).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only events after this position.
    #[arg(long)]
    after: Option<Position>,
    /// At most this many events (from the start, or from `--after`).
    #[arg(long, conflicts_with = "last")]
    limit: Option<u64>,
    /// Only the last N matching events.
    #[arg(long, value_name = "N")]
    last: Option<u64>,
    /// Keep running and print new events as they are appended (until Ctrl-C).
    #[arg(long)]
    follow: bool,
    /// Print the data fields the modules declare sensitive (password hashes, ...) instead of
    /// `"[redacted]"`.
    #[arg(long)]
    show_sensitive: bool,
}

impl EventFilter {
    fn query(&self) -> Query {
        if self.types.is_empty() && self.tags.is_empty() {
            Query::All
        } else {
            Query::item(
                QueryItem::new()
                    .types(self.types.iter().cloned())
                    .tags(self.tags.iter().cloned()),
            )
        }
    }
}

/// `fairway dlq ...`
#[derive(Debug, Clone, Subcommand)]
pub enum DlqAction {
    /// Print dead letters as JSON lines (every automation, or one).
    List {
        /// Only this automation.
        #[arg(long)]
        automation: Option<String>,
    },
    /// Put dead letters back on the retry queue with a fresh attempt budget (the server retries
    /// them when it runs).
    Replay {
        /// The automation.
        #[arg(long)]
        automation: String,
        /// The trigger position of one dead letter.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        position: Option<Position>,
        /// Every dead letter of the automation.
        #[arg(long)]
        all: bool,
    },
    /// Delete dead letters.
    Purge {
        /// The automation.
        #[arg(long)]
        automation: String,
        /// The trigger position of one dead letter.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        position: Option<Position>,
        /// Every dead letter of the automation.
        #[arg(long)]
        all: bool,
    },
}

/// `fairway views ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ViewsAction {
    /// Delete a materialized view's read model and rebuild it from the first event.
    Rebuild {
        /// The view's name (see `fairway status`).
        name: String,
    },
}

async fn open_host(backend: &Backend) -> anyhow::Result<(Opened, Runtime, Host)> {
    let opened = store::open(backend).await?;
    let rt = Runtime::new(opened.store.clone());
    let host = Host::new(rt.clone(), modules::all());
    Ok((opened, rt, host))
}

fn automations(host: &Host) -> Vec<String> {
    host.catalog()
        .iter()
        .flat_map(|m| m.workers.iter())
        .filter_map(|w| w.strip_prefix("automation:").map(str::to_owned))
        .collect()
}

#[derive(Serialize)]
struct EventLine<'a> {
    position: Position,
    #[serde(rename = "type")]
    event_type: &'a str,
    tags: &'a [dcb_core::Text],
    data: serde_json::Value,
    #[serde(skip_serializing_if = "dcb_core::Metadata::is_empty")]
    metadata: &'a dcb_core::Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<dcb_core::Uuid>,
}

/// Per event type, the data fields to print as `"[redacted]"`.
type Sensitive = BTreeMap<String, BTreeSet<String>>;

/// One event as a JSON line: data as JSON when it is JSON (its `sensitive` fields redacted),
/// else as text.
pub fn event_line(e: &SequencedEvent, sensitive: &Sensitive) -> anyhow::Result<String> {
    let mut data = serde_json::from_slice(&e.event.data).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&e.event.data).into_owned())
    });
    if let Some(fields) = sensitive.get(e.event.event_type.as_str()) {
        fairway_runtime::redact(&mut data, fields);
    }
    Ok(serde_json::to_string(&EventLine {
        position: e.position,
        event_type: &e.event.event_type,
        tags: &e.event.tags,
        data,
        metadata: &e.event.metadata,
        id: e.event.id,
    })?)
}

fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// `fairway events`.
pub async fn events(backend: &Backend, filter: EventFilter) -> anyhow::Result<()> {
    let opened = store::open(backend).await?;
    let store = opened.store.clone();
    let sensitive = if filter.show_sensitive {
        Sensitive::new()
    } else {
        Host::new(Runtime::new(store.clone()), modules::all()).sensitive_fields()
    };
    let query = filter.query();
    let mut last_seen = filter.after;
    let (head, batch) = match filter.last {
        Some(n) => {
            let options = ReadOptions::new()
                .after_opt(filter.after)
                .limit(n)
                .backwards();
            let stream = store.read(query.clone(), options).await?;
            let head = stream.head();
            let mut events = stream.collect_all().await?;
            events.reverse();
            (head, events)
        }
        None => {
            let mut options = ReadOptions::new().after_opt(filter.after);
            if let Some(n) = filter.limit {
                options = options.limit(n);
            }
            let mut stream = store.read(query.clone(), options).await?;
            let head = stream.head();
            while let Some(e) = stream.next().await {
                let e = e?;
                print_line(&event_line(&e, &sensitive)?)?;
                last_seen = Some(e.position);
            }
            (head, Vec::new())
        }
    };
    for e in &batch {
        print_line(&event_line(e, &sensitive)?)?;
        last_seen = Some(e.position);
    }
    if !filter.follow {
        return Ok(());
    }
    // Everything up to the head the read saw has been considered.
    let from = last_seen.max(head);
    let mut sub = store.subscribe(query, from);
    loop {
        tokio::select! {
            item = sub.next() => match item {
                Some(Ok(SubscriptionItem::Event(e))) => print_line(&event_line(&e, &sensitive)?)?,
                Some(Ok(SubscriptionItem::CaughtUp { .. })) => {}
                Some(Err(e)) => return Err(e).context("the subscription failed"),
                None => return Ok(()),
            },
            r = tokio::signal::ctrl_c() => {
                r?;
                return Ok(());
            }
        }
    }
}

/// `fairway dlq`.
pub async fn dlq(backend: &Backend, action: DlqAction) -> anyhow::Result<()> {
    let (_opened, rt, host) = open_host(backend).await?;
    let known = automations(&host);
    let check = |name: &str| -> anyhow::Result<()> {
        if known.iter().any(|a| a == name) {
            Ok(())
        } else {
            bail!(
                "no automation {name:?}; this host runs: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
    };
    match action {
        DlqAction::List { automation } => {
            let names = match automation {
                Some(a) => {
                    check(&a)?;
                    vec![a]
                }
                None => known.clone(),
            };
            for name in names {
                let mut after = None;
                loop {
                    let page = rt.dead_letters(&name, after, 500).await?;
                    for letter in &page {
                        let mut v = serde_json::to_value(letter)?;
                        if let Some(o) = v.as_object_mut() {
                            o.insert("automation".into(), name.clone().into());
                        }
                        print_line(&v.to_string())?;
                    }
                    match page.last() {
                        Some(l) if page.len() == 500 => after = Some(l.position),
                        _ => break,
                    }
                }
            }
        }
        DlqAction::Replay {
            automation,
            position,
            all,
        } => {
            check(&automation)?;
            let positions = match (position, all) {
                (Some(p), _) => vec![p],
                (None, _) => {
                    let mut ps = Vec::new();
                    let mut after = None;
                    loop {
                        let page = rt.dead_letters(&automation, after, 500).await?;
                        ps.extend(page.iter().map(|l| l.position));
                        match page.last() {
                            Some(l) if page.len() == 500 => after = Some(l.position),
                            _ => break ps,
                        }
                    }
                }
            };
            let mut n = 0;
            for p in positions {
                if rt.replay_dead_letter(&automation, p).await? {
                    n += 1;
                } else if position.is_some() {
                    bail!("no dead letter at position {p} for {automation}");
                }
            }
            eprintln!("{n} dead letter(s) of {automation} moved back to the retry queue");
        }
        DlqAction::Purge {
            automation,
            position,
            all: _,
        } => {
            check(&automation)?;
            let n = rt.purge_dead_letters(&automation, position).await?;
            if n == 0 && position.is_some() {
                bail!("no dead letter at that position for {automation}");
            }
            eprintln!("{n} dead letter(s) of {automation} purged");
        }
    }
    Ok(())
}

/// `fairway views`.
pub async fn views(backend: &Backend, action: ViewsAction) -> anyhow::Result<()> {
    let (opened, _rt, host) = open_host(backend).await?;
    match action {
        ViewsAction::Rebuild { name } => {
            let known = host.views();
            if !known.contains(&name) {
                bail!(
                    "no view {name:?}; this host has: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            }
            let store = opened.store.clone();
            let head = store.head().await?;
            let started = Instant::now();
            let progress = tokio::spawn(show_progress(store, name.clone(), head));
            let result = host.rebuild_view(&name).await;
            progress.abort();
            let reached = result
                .ok_or_else(|| anyhow!("no view {name:?}"))?
                .with_context(|| format!("rebuilding {name} failed"))?;
            eprintln!(
                "\rrebuilt {name} up to position {} in {:.1?}{:20}",
                reached.map_or_else(|| "0".to_owned(), |p| p.to_string()),
                started.elapsed(),
                ""
            );
        }
    }
    Ok(())
}

async fn show_progress(store: Arc<dyn EventStore>, name: String, head: Option<Position>) {
    let consumer = view_consumer(&name);
    let total = head.map_or(0, Position::get);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = match store.checkpoint(&consumer).await {
            Ok(p) => p.map_or(0, Position::get),
            Err(_) => continue,
        };
        let pct = if total == 0 {
            100.0
        } else {
            (done as f64 / total as f64 * 100.0).min(100.0)
        };
        eprint!("\rrebuilding {name}: position {done} of {total} ({pct:.0}%)");
        let _ = std::io::stderr().flush();
    }
}

#[derive(Debug, Serialize)]
struct ConsumerStatus {
    name: String,
    checkpoint: Option<Position>,
    /// Events matching its query after the checkpoint ([`Host::lags`], the definition
    /// `/metrics` and the console use too).
    lag: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letters: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_queue: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Status {
    backend: String,
    head: Option<Position>,
    events: u64,
    views: Vec<ConsumerStatus>,
    automations: Vec<ConsumerStatus>,
}

/// `fairway status`.
pub async fn status(backend: &Backend, json: bool) -> anyhow::Result<()> {
    let (opened, rt, host) = open_host(backend).await?;
    let head = opened.store.head().await?;
    let events = store::count_events(&opened).await?;
    let mut views = Vec::new();
    let mut autos = Vec::new();
    for l in host.lags().await? {
        match l.kind {
            ConsumerKind::View => views.push(ConsumerStatus {
                name: l.name,
                checkpoint: l.checkpoint,
                lag: l.lag,
                dead_letters: None,
                retry_queue: None,
            }),
            ConsumerKind::Automation => {
                let dead = rt.dead_letters(&l.name, None, 100_000).await?.len();
                let retry = rt.retry_queue(&l.name, 100_000).await?.len();
                autos.push(ConsumerStatus {
                    name: l.name,
                    checkpoint: l.checkpoint,
                    lag: l.lag,
                    dead_letters: Some(dead),
                    retry_queue: Some(retry),
                });
            }
        }
    }
    let status = Status {
        backend: backend.describe(),
        head,
        events,
        views,
        automations: autos,
    };
    if json {
        print_line(&serde_json::to_string(&status)?)?;
        return Ok(());
    }
    let pos = |p: Option<Position>| p.map_or_else(|| "none".to_owned(), |p| p.to_string());
    let mut out = format!(
        "store:  {}\nhead:   {}\nevents: {}\n",
        status.backend,
        pos(status.head),
        status.events
    );
    for v in &status.views {
        out.push_str(&format!(
            "view {}: checkpoint {}, lag {}\n",
            v.name,
            pos(v.checkpoint),
            v.lag
        ));
    }
    for a in &status.automations {
        out.push_str(&format!(
            "automation {}: checkpoint {}, lag {}, dead letters {}, retry queue {}\n",
            a.name,
            pos(a.checkpoint),
            a.lag,
            a.dead_letters.unwrap_or(0),
            a.retry_queue.unwrap_or(0)
        ));
    }
    print!("{out}");
    Ok(())
}
