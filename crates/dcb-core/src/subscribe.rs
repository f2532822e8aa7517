//! A subscription built from `read` and `wait_for_head`, shared by every backend.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;

use crate::{EventStore, Position, Query, ReadOptions, Subscription, SubscriptionItem};

/// Events fetched per catch-up page; the most a subscription holds in memory.
pub const SUBSCRIPTION_PAGE: u64 = 512;

struct State<S: ?Sized> {
    store: Arc<S>,
    query: Query,
    cursor: Option<Position>,
    seen_head: Option<Position>,
    buffer: VecDeque<crate::SequencedEvent>,
    caught_up_sent: bool,
    pending_caught_up: Option<Option<Position>>,
    failed: bool,
}

/// A catch-up-then-live subscription over any store: pages of at most [`SUBSCRIPTION_PAGE`]
/// events are read after the last position yielded; when a page comes back short the
/// subscription emits `CaughtUp` once and then waits for the head to move.
pub fn poll_subscription<S>(store: Arc<S>, query: Query, after: Option<Position>) -> Subscription
where
    S: EventStore + ?Sized,
{
    let state = State {
        store,
        query,
        cursor: after,
        seen_head: None,
        buffer: VecDeque::new(),
        caught_up_sent: false,
        pending_caught_up: None,
        failed: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.failed {
            return None;
        }
        loop {
            if let Some(ev) = st.buffer.pop_front() {
                st.cursor = Some(ev.position);
                return Some((Ok(SubscriptionItem::Event(ev)), st));
            }
            if let Some(head) = st.pending_caught_up.take() {
                st.caught_up_sent = true;
                return Some((Ok(SubscriptionItem::CaughtUp { head }), st));
            }
            if st.seen_head.is_some() || st.caught_up_sent {
                // Live: wait until something new is committed.
                match st.store.wait_for_head(st.seen_head).await {
                    Ok(_) => {}
                    Err(e) => {
                        st.failed = true;
                        return Some((Err(e), st));
                    }
                }
            }
            let options = ReadOptions::new()
                .after_opt(st.cursor)
                .limit(SUBSCRIPTION_PAGE);
            let read = match st.store.read(st.query.clone(), options).await {
                Ok(r) => r,
                Err(e) => {
                    st.failed = true;
                    return Some((Err(e), st));
                }
            };
            let head = read.head();
            let mut stream = read;
            let mut n = 0u64;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) => {
                        n += 1;
                        st.buffer.push_back(ev);
                    }
                    Err(e) => {
                        st.failed = true;
                        return Some((Err(e), st));
                    }
                }
            }
            if n < SUBSCRIPTION_PAGE {
                // Everything up to `head` has been read.
                st.seen_head = head
                    .max(st.cursor)
                    .max(st.buffer.back().map(|e| e.position));
                if !st.caught_up_sent {
                    st.pending_caught_up = Some(head);
                }
            } else {
                st.seen_head = None;
            }
        }
    })
    .boxed()
}
