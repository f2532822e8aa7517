//! Live tails: `GET /api/events/live` as server-sent events, fed by one store subscription per
//! console (the hub) fanned out to every tail through a bounded broadcast channel.
//!
//! Before, each tail was a store subscription of its own, so every commit made every tail read
//! the store: with 2 000 idle tails one write went from 1.4 ms to 85 ms. Now a commit is read
//! once, by the hub; a tail only filters what the hub broadcasts. The number of tails is capped
//! ([`crate::DEFAULT_MAX_LIVE_TAILS`]; more get 503 with `Retry-After`), each tail sends what
//! arrived within [`TAIL_FLUSH`] in one chunk (so it wakes at most that often, whatever the
//! write rate), and a tail that falls
//! more than [`HUB_CAPACITY`] events behind gets an `error` message and ends instead of being
//! buffered.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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

/// How often an idle tail sends a comment line, so that proxies keep the stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A tail sends what arrived within this interval in one chunk, so that it wakes at most this
/// often whatever the write rate (a tail is for eyes: 50 ms is not noticed).
const TAIL_FLUSH: Duration = Duration::from_millis(50);

/// One committed event as the hub broadcasts it: its type and tags for filtering (no data), and
/// the server-sent event every tail sends, rendered once for all of them.
pub(crate) enum HubItem {
    Event {
        position: Position,
        event: Event,
        message: Bytes,
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
                message: event_message(e.position, &summary(&e).to_string()),
                position: e.position,
                event: Event {
                    data: dcb_core::Bytes::new(),
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
    keep_alive: tokio::time::Interval,
    _permit: OwnedSemaphorePermit,
}

/// One server-sent event; `data` is one line of JSON (serde_json writes no newline).
fn message(event: &str, id: Option<Position>, data: &str) -> Bytes {
    let id = id.map(|p| format!("id: {p}\n")).unwrap_or_default();
    Bytes::from(format!("event: {event}\n{id}data: {data}\n\n"))
}

fn error_message(body: String) -> Bytes {
    message("error", None, &body)
}

impl Tail {
    /// The next message, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
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
                            let data = json!({ "head": head }).to_string();
                            return Some(message("caught_up", None, &data));
                        }
                    }
                }
                Phase::Live => {
                    let first = match self.recv().await {
                        None => return Some(Bytes::from_static(b":\n\n")),
                        Some(r) => r,
                    };
                    let mut out = Vec::new();
                    if !self.take(first, &mut out) {
                        continue;
                    }
                    // Whatever else arrives within the flush interval goes out in the same
                    // chunk: a tail wakes at most every TAIL_FLUSH, whatever the write rate.
                    tokio::time::sleep(TAIL_FLUSH).await;
                    while !matches!(self.phase, Phase::Done) {
                        match self.rx.try_recv() {
                            Ok(item) => {
                                self.take(Ok(item), &mut out);
                            }
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                self.take(Err(broadcast::error::RecvError::Lagged(n)), &mut out);
                            }
                            Err(broadcast::error::TryRecvError::Closed) => {
                                self.take(Err(broadcast::error::RecvError::Closed), &mut out);
                            }
                        }
                    }
                    return Some(Bytes::from(out));
                }
            }
        }
    }

    /// Appends what `item` means for this tail to `out`; false when it means nothing (an event
    /// the filter drops, or one sent already).
    fn take(
        &mut self,
        item: Result<Arc<HubItem>, broadcast::error::RecvError>,
        out: &mut Vec<u8>,
    ) -> bool {
        let end = |phase: &mut Phase, out: &mut Vec<u8>, body: String| {
            *phase = Phase::Done;
            out.extend_from_slice(&error_message(body));
            true
        };
        match item {
            Ok(item) => match &*item {
                HubItem::Event {
                    position,
                    event,
                    message,
                } => {
                    if self.last.is_some_and(|l| *position <= l) || !self.query.matches(event) {
                        return false;
                    }
                    self.last = Some(*position);
                    out.extend_from_slice(message);
                    true
                }
                HubItem::Failed(body) => end(&mut self.phase, out, body.clone()),
            },
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let body = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tail_lagged",
                    format!(
                        "this tail fell {missed} events behind and was dropped; reconnect to \
                         resume after the last event received"
                    ),
                )
                .body()
                .to_string();
                end(&mut self.phase, out, body)
            }
            Err(broadcast::error::RecvError::Closed) => {
                let body = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the live tail stopped; reconnect to resume",
                )
                .body()
                .to_string();
                end(&mut self.phase, out, body)
            }
        }
    }
}

impl Tail {
    /// The next broadcast item, or `None` when the keep-alive comment is due (every
    /// [`KEEP_ALIVE`], whatever the traffic: no timer is touched per event).
    async fn recv(&mut self) -> Option<Result<Arc<HubItem>, broadcast::error::RecvError>> {
        tokio::select! {
            item = self.rx.recv() => Some(item),
            _ = self.keep_alive.tick() => None,
        }
    }
}

fn store_error(e: StoreError) -> String {
    ApiError::from(e).body().to_string()
}

fn event_message(position: Position, summary: &str) -> Bytes {
    message("event", Some(position), summary)
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
        keep_alive: tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE),
        _permit: permit,
    };
    let events = futures::stream::unfold(tail, |mut tail| async move {
        let msg = tail.next().await?;
        Some((Ok::<_, Infallible>(msg), tail))
    })
    .boxed();
    let events: futures::stream::BoxStream<'static, Result<Bytes, Infallible>> = match st.shutdown()
    {
        Some(sd) => events.take_until(async move { sd.wait().await }).boxed(),
        None => events,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response())
}
