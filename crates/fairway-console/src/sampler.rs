//! The store sampler: every few seconds, the head, the event count and the append counters go
//! into a small ring buffer, from which the store panel draws rates per second.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, UNIX_EPOCH};

use dcb_core::Position;
use fairway_runtime::{ExtraMetrics, Runtime};
use serde::Serialize;

/// Cumulative append counters of a store (since the process started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StoreCounters {
    /// Appends committed.
    pub appends: u64,
    /// Appends refused by an append condition.
    pub condition_failures: u64,
}

/// One sample of the store.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken (ms since the Unix epoch, from the runtime's clock).
    pub at_ms: u64,
    /// The head then.
    pub head: Option<Position>,
    /// The number of events then, when the backend counts them.
    pub events: Option<u64>,
    /// The append counters then, when the host counts them.
    pub counters: Option<StoreCounters>,
}

/// A rate between two consecutive samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// The end of the interval (ms since the Unix epoch).
    pub at_ms: u64,
    /// Appends per second over the interval, when counted.
    pub appends_per_s: Option<f64>,
    /// Condition failures per second over the interval, when counted.
    pub condition_failures_per_s: Option<f64>,
    /// Events per second over the interval, when the backend counts events.
    pub events_per_s: Option<f64>,
}

type CounterFn = Arc<dyn Fn() -> Option<StoreCounters> + Send + Sync>;

/// The ring buffer and its background task.
pub(crate) struct Sampler {
    every: Duration,
    capacity: usize,
    counters: CounterFn,
    samples: Mutex<VecDeque<Sample>>,
    started: AtomicBool,
}

impl Sampler {
    pub(crate) fn new(every: Duration, capacity: usize, counters: CounterFn) -> Sampler {
        Sampler {
            every,
            capacity,
            counters,
            samples: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            started: AtomicBool::new(false),
        }
    }

    pub(crate) fn every(&self) -> Duration {
        self.every
    }

    /// The samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.iter().copied().collect()
    }

    /// Takes one sample now.
    pub(crate) async fn sample(&self, rt: &Runtime) {
        let stats = match rt.store().stats().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "console: cannot sample the store");
                return;
            }
        };
        let at_ms = rt
            .env()
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let sample = Sample {
            at_ms,
            head: stats.head,
            events: stats.events,
            counters: (self.counters)(),
        };
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        while s.len() >= self.capacity {
            s.pop_front();
        }
        s.push_back(sample);
    }

    /// Starts the background task once; it holds only a weak reference to `owner` and ends
    /// when the owner is dropped. Does nothing outside a Tokio runtime.
    pub(crate) fn start<T, F>(&self, owner: Weak<T>, parts: F)
    where
        T: Send + Sync + 'static,
        F: Fn(&T) -> (&Sampler, &Runtime) + Send + Sync + 'static,
    {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let every = self.every;
        handle.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(owner) = owner.upgrade() else {
                    return;
                };
                let (sampler, rt) = parts(&owner);
                sampler.sample(rt).await;
            }
        });
    }
}

/// Rates between consecutive samples.
pub(crate) fn rates(samples: &[Sample]) -> Vec<Rate> {
    samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (w[0], w[1]);
            let secs = b.at_ms.checked_sub(a.at_ms).filter(|d| *d > 0)? as f64 / 1000.0;
            let per_s = |x: Option<u64>, y: Option<u64>| match (x, y) {
                (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / secs),
                _ => None,
            };
            Some(Rate {
                at_ms: b.at_ms,
                appends_per_s: per_s(a.counters.map(|c| c.appends), b.counters.map(|c| c.appends)),
                condition_failures_per_s: per_s(
                    a.counters.map(|c| c.condition_failures),
                    b.counters.map(|c| c.condition_failures),
                ),
                events_per_s: per_s(a.events, b.events),
            })
        })
        .collect()
}

/// Reads the store counters from the Prometheus text of the runtime's [`ExtraMetrics`], when the
/// host registered one that renders `fairway_store_appends_total` and
/// `fairway_store_condition_failures_total`.
pub(crate) fn counters_from_extra_metrics(rt: &Runtime) -> Option<StoreCounters> {
    let text = rt.service::<ExtraMetrics>()?.render();
    parse_counters(&text)
}

/// The two store counters from Prometheus text (both must be present).
pub(crate) fn parse_counters(text: &str) -> Option<StoreCounters> {
    let value = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?;
            // `name value` or `name{labels} value`; not `name_suffix ...`.
            let rest = match rest.chars().next()? {
                ' ' => rest,
                '{' => rest.split_once('}')?.1,
                _ => return None,
            };
            let v: f64 = rest.split_whitespace().next()?.parse().ok()?;
            (v.is_finite() && v >= 0.0).then_some(v as u64)
        })
    };
    Some(StoreCounters {
        appends: value("fairway_store_appends_total")?,
        condition_failures: value("fairway_store_condition_failures_total")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_host_counters() {
        let text = "# HELP fairway_store_appends_total x\n# TYPE fairway_store_appends_total counter\n\
                    fairway_store_appends_total 12\nfairway_store_appends_total_extra 99\n\
                    fairway_store_condition_failures_total{store=\"a\"} 3\n";
        assert_eq!(
            parse_counters(text),
            Some(StoreCounters {
                appends: 12,
                condition_failures: 3
            })
        );
        assert_eq!(parse_counters("fairway_store_appends_total 1\n"), None);
        assert_eq!(parse_counters("fairway_store_appends_total x\n"), None);
    }

    #[test]
    fn rates_per_second() {
        let s = |at_ms, appends, failures, events| Sample {
            at_ms,
            head: None,
            events: Some(events),
            counters: Some(StoreCounters {
                appends,
                condition_failures: failures,
            }),
        };
        let r = rates(&[s(1000, 0, 0, 0), s(3000, 10, 2, 20), s(3000, 11, 2, 20)]);
        assert_eq!(r.len(), 1, "a zero-length interval has no rate");
        assert_eq!(r[0].appends_per_s, Some(5.0));
        assert_eq!(r[0].condition_failures_per_s, Some(1.0));
        assert_eq!(r[0].events_per_s, Some(10.0));
    }
}
