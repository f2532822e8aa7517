//! Plain counters and gauges per automation and per view, rendered as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters and gauges of one automation.
#[derive(Debug, Default)]
pub struct AutomationMetrics {
    /// Triggers handled successfully (counter).
    pub processed: AtomicU64,
    /// Failed attempts scheduled for a retry (counter).
    pub retries: AtomicU64,
    /// Triggers moved to the dead-letter queue (counter).
    pub dead_lettered: AtomicU64,
    /// Entries in the dead-letter queue now (gauge).
    pub dlq_size: AtomicI64,
    /// Entries waiting for a retry now (gauge).
    pub retry_queue: AtomicI64,
    /// Triggers being processed now (gauge).
    pub in_flight: AtomicI64,
    /// Events matching the automation's query after its checkpoint (gauge; computed on each
    /// `/metrics` scrape by [`Host::lags`](crate::Host::lags), see [`lag`](crate::lag)).
    pub lag: AtomicU64,
    /// 1 while this replica holds the automation's lease (gauge).
    pub lease_held: Arc<AtomicU64>,
}

impl AutomationMetrics {
    pub(crate) fn gauge_lease(&self) -> Arc<AtomicU64> {
        self.lease_held.clone()
    }
}

/// Counters and gauges of one materialized view.
#[derive(Debug, Default)]
pub struct ViewMetrics {
    /// Events applied (counter).
    pub processed: AtomicU64,
    /// Events matching the view's query after its checkpoint (gauge; computed on each
    /// `/metrics` scrape by [`Host::lags`](crate::Host::lags), see [`lag`](crate::lag)).
    pub lag: AtomicU64,
    /// Times the view was rebuilt from scratch (counter).
    pub rebuilds: AtomicU64,
    /// 1 while this replica holds the view's lease (gauge).
    pub lease_held: Arc<AtomicU64>,
}

/// The registry: cheap to clone, shared by the runtime and the host's `/metrics` route.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    automations: Arc<Mutex<BTreeMap<String, Arc<AutomationMetrics>>>>,
    views: Arc<Mutex<BTreeMap<String, Arc<ViewMetrics>>>>,
}

impl Metrics {
    /// The metrics of automation `name` (created on first use).
    pub fn automation(&self, name: &str) -> Arc<AutomationMetrics> {
        let mut map = self.automations.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// The metrics of view `name` (created on first use).
    pub fn view(&self, name: &str) -> Arc<ViewMetrics> {
        let mut map = self.views.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let autos: Vec<(String, Arc<AutomationMetrics>)> = {
            let map = self.automations.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        type AutoField = fn(&AutomationMetrics) -> i128;
        let auto_series: [(&str, &str, &str, AutoField); 8] = [
            (
                "fairway_automation_processed_total",
                "counter",
                "Triggers handled",
                |m| m.processed.load(Ordering::Relaxed).into(),
            ),
            (
                "fairway_automation_retries_total",
                "counter",
                "Failed attempts scheduled for retry",
                |m| m.retries.load(Ordering::Relaxed).into(),
            ),
            (
                "fairway_automation_dead_lettered_total",
                "counter",
                "Triggers moved to the dead-letter queue",
                |m| m.dead_lettered.load(Ordering::Relaxed).into(),
            ),
            (
                "fairway_automation_dlq_size",
                "gauge",
                "Dead-letter queue size",
                |m| m.dlq_size.load(Ordering::Relaxed).into(),
            ),
            (
                "fairway_automation_retry_queue",
                "gauge",
                "Triggers waiting for a retry",
                |m| m.retry_queue.load(Ordering::Relaxed).into(),
            ),
            (
                "fairway_automation_in_flight",
                "gauge",
                "Triggers being processed",
                |m| m.in_flight.load(Ordering::Relaxed).into(),
            ),
            (
                "fairway_automation_lag",
                "gauge",
                "Events matching the automation's query after its checkpoint",
                |m| m.lag.load(Ordering::Relaxed).into(),
            ),
            (
                "fairway_automation_lease_held",
                "gauge",
                "1 while this replica holds the lease",
                |m| m.lease_held.load(Ordering::Relaxed).into(),
            ),
        ];
        for (name, kind, help, get) in auto_series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (auto, m) in &autos {
                let _ = writeln!(out, "{name}{{automation=\"{}\"}} {}", escape(auto), get(m));
            }
        }
        let views: Vec<(String, Arc<ViewMetrics>)> = {
            let map = self.views.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        type ViewField = fn(&ViewMetrics) -> u64;
        let view_series: [(&str, &str, &str, ViewField); 4] = [
            (
                "fairway_view_processed_total",
                "counter",
                "Events applied",
                |m| m.processed.load(Ordering::Relaxed),
            ),
            (
                "fairway_view_lag",
                "gauge",
                "Events matching the view's query after its checkpoint",
                |m| m.lag.load(Ordering::Relaxed),
            ),
            (
                "fairway_view_rebuilds_total",
                "counter",
                "Rebuilds from scratch",
                |m| m.rebuilds.load(Ordering::Relaxed),
            ),
            (
                "fairway_view_lease_held",
                "gauge",
                "1 while this replica holds the view's lease",
                |m| m.lease_held.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, get) in view_series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (view, m) in &views {
                let _ = writeln!(out, "{name}{{view=\"{}\"}} {}", escape(view), get(m));
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.automation("welcome")
            .retries
            .fetch_add(2, Ordering::Relaxed);
        m.automation("welcome").dlq_size.store(1, Ordering::Relaxed);
        m.view("users").processed.fetch_add(7, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("# TYPE fairway_automation_retries_total counter\n"));
        assert!(text.contains("fairway_automation_retries_total{automation=\"welcome\"} 2\n"));
        assert!(text.contains("fairway_automation_dlq_size{automation=\"welcome\"} 1\n"));
        assert!(text.contains("fairway_view_processed_total{view=\"users\"} 7\n"));
        assert_eq!(escape("a\"b"), "a\\\"b");
    }
}
