//! Live tails: `GET /api/events/live` as server-sent events, fed by one store subscription per
//! console (the hub) fanned out to every tail through a bounded broadcast channel.
//!
//! Before, each tail was a store subscription of its own, so every commit made every tail read
//! the store: with 2 000 idle tails one write went from 1.4 ms to 85 ms. Now a commit is read
//! once, by the hub; a tail only filters what the hub broadcasts. The number of tails is capped
//! ([`crate::DEFAULT_MAX_LIVE_TAILS`]; more get 503 with `Retry-After`), and a tail that falls
//! more than [`HUB_CAPACITY`] events behind gets an `error` message and ends instead of being
//! buffered.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dcb_core::{
    Event, EventStore, Position, Query, ReadOptions, ReadStream, SequencedEvent, StoreError,
    SubscriptionItem,
};
use fairway_runtime::http::ApiError;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

use crate::api::{ConsoleState, summary};
use crate::params::{Params, parse_position};

/// Events the hub keeps for tails that are behind by default; a tail further behind is dropped
/// (see [`crate::Console::tail_buffer`]).
pub const HUB_CAPACITY: usize = 1024;

/// Seconds a refused tail is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: u64 = 5;

/// One committed event as the hub broadcasts it: its type and tags for filtering (no data), and
/// the summary every tail sends, rendered once.
pub(crate) enum HubItem {
    Event {
        position: Position,
        event: Event,
        summary: String,
    },
    /// The hub's subscription failed; every tail ends with this error body.
    Failed(String),
}

/// The live tails of one console.
pub(crate) struct Tails {
    max: usize,
    capacity: usize,
    permits: Arc<Semaphore>,
    hub: Arc<Mutex<Option<broadcast::Sender<Arc<HubItem>>>>>,
    /// Store subscriptions the hub has opened (one per hub start, whatever the number of tails).
    subscriptions: Arc<AtomicU64>,
    /// Tails refused at the cap.
    refused: AtomicU64,
    /// The last position the hub broadcast.
    broadcast: Arc<Mutex<Option<Position>>>,
}

impl Tails {
    pub(crate) fn new(max: usize, capacity: usize) -> Tails {
        Tails {
            max,
            capacity: capacity.max(1),
            permits: Arc::new(Semaphore::new(max)),
            hub: Arc::default(),
            subscriptions: Arc::new(AtomicU64::new(0)),
            refused: AtomicU64::new(0),
            broadcast: Arc::default(),
        }
    }

    /// Figures for `GET /api/store`.
    pub(crate) fn stats(&self) -> serde_json::Value {
        json!({
            "open": self.max - self.permits.available_permits(),
            "max": self.max,
            "refused": self.refused.load(Ordering::Relaxed),
            "store_subscriptions": self.subscriptions.load(Ordering::Relaxed),
            "broadcast_up_to": *self.broadcast.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }

    /// A receiver of every event committed after `head` (or later: see the module doc),
    /// starting the hub when none runs.
    fn receiver(
        &self,
        store: Arc<dyn EventStore>,
        head: Option<Position>,
    ) -> broadcast::Receiver<Arc<HubItem>> {
        let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = hub.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(self.capacity);
        *hub = Some(tx.clone());
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run_hub(
            store,
            head,
            tx,
            self.hub.clone(),
            self.broadcast.clone(),
        ));
        rx
    }
}

type HubSlot = Arc<Mutex<Option<broadcast::Sender<Arc<HubItem>>>>>;

/// The hub: reads each committed event once and broadcasts it; ends when the store fails or no
/// tail listens any more (leaving its slot empty, so that the next tail starts a fresh hub).
async fn run_hub(
    store: Arc<dyn EventStore>,
    after: Option<Position>,
    tx: broadcast::Sender<Arc<HubItem>>,
    slot: HubSlot,
    broadcast: Arc<Mutex<Option<Position>>>,
) {
    let mut subscription = store.subscribe(Query::All, after);
    let leave = || {
        let mut hub = slot.lock().unwrap_or_else(|p| p.into_inner());
        if hub.as_ref().is_some_and(|h| h.same_channel(&tx)) {
            *hub = None;
        }
    };
    while let Some(item) = subscription.next().await {
        let item = match item {
            Ok(SubscriptionItem::Event(e)) => HubItem::Event {
                summary: summary(&e).to_string(),
                position: e.position,
                event: Event {
                    data: Vec::new(),
                    ..e.event
                },
            },
            Ok(SubscriptionItem::CaughtUp { .. }) => continue,
            Err(e) => HubItem::Failed(ApiError::from(e).body().to_string()),
        };
        if matches!(item, HubItem::Failed(_)) {
            leave();
            let _ = tx.send(Arc::new(item));
            return;
        }
        let position = match &item {
            HubItem::Event { position, .. } => Some(*position),
            HubItem::Failed(_) => None,
        };
        let sent = tx.send(Arc::new(item));
        *broadcast.lock().unwrap_or_else(|p| p.into_inner()) = position;
        if sent.is_err() {
            // No tail listens. Checked under the slot's lock: a tail subscribing meanwhile
            // keeps the hub running (it read the event just lost in its catch-up).
            let mut hub = slot.lock().unwrap_or_else(|p| p.into_inner());
            if tx.receiver_count() == 0 {
                if hub.as_ref().is_some_and(|h| h.same_channel(&tx)) {
                    *hub = None;
                }
                return;
            }
        }
    }
    leave();
}

/// Where a tail is.
enum Phase {
    /// Reading the events committed before it started.
    CatchUp(ReadStream),
    /// Following the hub.
    Live,
    Done,
}

/// One tail's state; it holds its permit for as long as it streams.
struct Tail {
    query: Query,
    phase: Phase,
    /// Events read in the catch-up but not sent yet (the catch-up reads in chunks).
    pending: VecDeque<SequencedEvent>,
    last: Option<Position>,
    rx: broadcast::Receiver<Arc<HubItem>>,
    _permit: OwnedSemaphorePermit,
}

fn error_message(body: String) -> SseEvent {
    SseEvent::default().event("error").data(body)
}

impl Tail {
    /// The next message, or `None` when the stream is over.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            match &mut self.phase {
                Phase::Done => return None,
                Phase::CatchUp(read) => {
                    if let Some(e) = self.pending.pop_front() {
                        self.last = Some(e.position);
                        return Some(event_message(e.position, &summary(&e).to_string()));
                    }
                    match read.next().await {
                        Some(Ok(e)) => self.pending.push_back(e),
                        Some(Err(e)) => {
                            self.phase = Phase::Done;
                            return Some(error_message(store_error(e)));
                        }
                        None => {
                            let head = read.head().max(self.last);
                            self.last = head;
                            self.phase = Phase::Live;
                            return Some(
                                SseEvent::default()
                                    .event("caught_up")
                                    .data(json!({ "head": head }).to_string()),
                            );
                        }
                    }
                }
                Phase::Live => match self.rx.recv().await {
                    Ok(item) => match &*item {
                        HubItem::Event {
                            position,
                            event,
                            summary,
                        } => {
                            if self.last.is_some_and(|l| *position <= l)
                                || !self.query.matches(event)
                            {
                                continue;
                            }
                            self.last = Some(*position);
                            return Some(event_message(*position, summary));
                        }
                        HubItem::Failed(body) => {
                            self.phase = Phase::Done;
                            return Some(error_message(body.clone()));
                        }
                    },
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        self.phase = Phase::Done;
                        let body = ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "tail_lagged",
                            format!(
                                "this tail fell {missed} events behind and was dropped; \
                                 reconnect to resume after the last event received"
                            ),
                        )
                        .body()
                        .to_string();
                        return Some(error_message(body));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        self.phase = Phase::Done;
                        let body = ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            "the live tail stopped; reconnect to resume",
                        )
                        .body()
                        .to_string();
                        return Some(error_message(body));
                    }
                },
            }
        }
    }
}

fn store_error(e: StoreError) -> String {
    ApiError::from(e).body().to_string()
}

fn event_message(position: Position, summary: &str) -> SseEvent {
    SseEvent::default()
        .event("event")
        .id(position.to_string())
        .data(summary)
}

/// `GET /api/events/live?type=&tag=&after=`: server-sent events. Each new event matching the
/// filter is an `event` message (`id` = its position, data = the event summary); a
/// `caught_up` message marks the switch to live; an `error` message ends the stream. Starts after
/// `after`, the `Last-Event-ID` header (a reconnecting browser), or the current head. At most
/// [`Tails::max`] tails stream at once: more get 503 with `Retry-After`.
pub(crate) async fn live_events(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref(), &["type", "tag", "after"])?;
    let query = p.query()?;
    let mut after = p.position("after")?;
    if after.is_none()
        && let Some(last) = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    {
        after = Some(parse_position("Last-Event-ID", last)?);
    }
    let tails = st.tails();
    let Ok(permit) = tails.permits.clone().try_acquire_owned() else {
        tails.refused.fetch_add(1, Ordering::Relaxed);
        let mut refused = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_tails",
            format!(
                "{} live tails are open already, the most this console serves; try again later",
                tails.max
            ),
        )
        .into_response();
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        return Ok(refused);
    };
    let store = st.store();
    let head = store.head().await?;
    let after = after.or(head);
    // Subscribe first, then read what came before: nothing falls between the two (duplicates
    // are skipped by position).
    let rx = tails.receiver(store.clone(), head);
    let read = store
        .read(query.clone(), ReadOptions::new().after_opt(after))
        .await?;
    let tail = Tail {
        query,
        phase: Phase::CatchUp(read),
        pending: VecDeque::new(),
        last: after,
        rx,
        _permit: permit,
    };
    let events = futures::stream::unfold(tail, |mut tail| async move {
        let msg = tail.next().await?;
        Some((Ok::<_, Infallible>(msg), tail))
    })
    .boxed();
    let events: futures::stream::BoxStream<'static, Result<SseEvent, Infallible>> =
        match st.shutdown() {
            Some(sd) => events.take_until(async move { sd.wait().await }).boxed(),
            None => events,
        };
    Ok((
        [(header::CACHE_CONTROL, "no-cache")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
        .into_response())
}
