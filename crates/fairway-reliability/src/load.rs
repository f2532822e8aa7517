//! Bounded load: N tasks (one keep-alive connection each) send the [`workload`](crate::workload)
//! mix for a fixed time or until stopped, recording statuses, latencies, acknowledged writes and
//! the server's memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::workload::{Ack, Op, Worker, position_of};

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Wall time.
    pub elapsed: Duration,
    /// Requests that got a response.
    pub responses: u64,
    /// Responses per (op, status).
    pub statuses: BTreeMap<(String, u16), u64>,
    /// Responses that were neither 2xx nor an expected 409 (first 20, with their body).
    pub unexpected: Vec<String>,
    /// How many responses were unexpected.
    pub unexpected_count: u64,
    /// Requests without a response (transport errors, timeouts).
    pub transport_errors: u64,
    /// First transport errors (up to 5).
    pub transport_samples: Vec<String>,
    /// Latencies of responses, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// Writes acknowledged with a 2xx.
    pub acks: Vec<Ack>,
    /// Server `VmRSS` samples (seconds since start, KiB).
    pub rss_kib: Vec<(f64, u64)>,
}

impl LoadReport {
    /// The `q` quantile of the latencies (0.99 = p99), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let last = self.latencies_us.len() - 1;
        let i = ((last as f64) * q).round() as usize;
        self.latencies_us[i.min(last)] as f64 / 1000.0
    }

    /// Responses per second.
    pub fn throughput(&self) -> f64 {
        self.responses as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Responses with this status, over every op.
    pub fn count_status(&self, status: u16) -> u64 {
        self.statuses
            .iter()
            .filter(|((_, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    /// One human line per figure.
    pub fn summary(&self) -> String {
        let ok: u64 = self
            .statuses
            .iter()
            .filter(|((_, s), _)| (200..300).contains(s))
            .map(|(_, n)| n)
            .sum();
        let rss = match (self.rss_kib.first(), self.rss_kib.iter().map(|r| r.1).max()) {
            (Some(first), Some(max)) => format!(
                "server VmRSS first {} KiB, last {} KiB, max {max} KiB ({} samples)",
                first.1,
                self.rss_kib.last().map_or(0, |r| r.1),
                self.rss_kib.len()
            ),
            _ => "server VmRSS not sampled".into(),
        };
        format!(
            "{} responses in {:.1} s ({:.0}/s): {ok} 2xx, {} 409, {} unexpected, {} transport errors\n\
             latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n{rss}\n{} writes acknowledged",
            self.responses,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            self.count_status(409),
            self.unexpected_count,
            self.transport_errors,
            self.quantile_ms(0.5),
            self.quantile_ms(0.9),
            self.quantile_ms(0.99),
            self.quantile_ms(1.0),
            self.acks.len(),
        )
    }
}

#[derive(Debug, Default)]
struct TaskResult {
    statuses: BTreeMap<(String, u16), u64>,
    unexpected: Vec<String>,
    unexpected_count: u64,
    transport_errors: u64,
    transport_samples: Vec<String>,
    latencies_us: Vec<u64>,
    acks: Vec<Ack>,
}

async fn task(
    client: Client,
    mut worker: Worker,
    until: Instant,
    stop: Arc<AtomicBool>,
    max_requests: u64,
) -> (Worker, TaskResult) {
    let mut r = TaskResult::default();
    let mut sent = 0u64;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) && sent < max_requests {
        sent += 1;
        let op = worker.next_op();
        let started = Instant::now();
        match op.send(&client).await {
            Ok(reply) => {
                r.latencies_us
                    .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                *r.statuses
                    .entry((op.label().to_owned(), reply.status))
                    .or_default() += 1;
                if !op.expected_reply(&reply) {
                    r.unexpected_count += 1;
                    if r.unexpected.len() < 20 {
                        r.unexpected.push(format!(
                            "{op:?} -> {} {}",
                            reply.status,
                            String::from_utf8_lossy(&reply.body)
                        ));
                    }
                }
                worker.observe(&op, reply.status);
                if (200..300).contains(&reply.status) && op.event_type().is_some() {
                    r.acks.push(Ack {
                        position: position_of(&reply),
                        op,
                    });
                }
            }
            Err(e) => {
                r.transport_errors += 1;
                if r.transport_samples.len() < 5 {
                    r.transport_samples.push(format!("{op:?}: {e}"));
                }
                // The outcome is unknown: never complete that item again.
                if let Op::CompleteItem { list, item } = &op {
                    worker.mark_done(list, item);
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (worker, r)
}

/// Runs `workers` concurrently (one task and connection each) against `client` until
/// `duration` has passed, `stop` is set, or each task sent `max_requests`; samples the RSS of
/// `pid` every 250 ms when given. Returns the report and the workers (with what they created).
pub async fn run(
    client: &Client,
    workers: Vec<Worker>,
    duration: Duration,
    max_requests: u64,
    stop: Arc<AtomicBool>,
    pid: Option<u32>,
) -> (LoadReport, Vec<Worker>) {
    let started = Instant::now();
    let until = started + duration;
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let Some(pid) = pid else { return samples };
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                if let Some(kib) = crate::server::rss_kib(pid) {
                    samples.push((started.elapsed().as_secs_f64(), kib));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            samples
        })
    };
    let handles: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(task(client.clone(), w, until, stop.clone(), max_requests)))
        .collect();
    let mut report = LoadReport::default();
    let mut back = Vec::new();
    for h in handles {
        let Ok((w, r)) = h.await else {
            report.unexpected.push("a load task panicked".into());
            report.unexpected_count += 1;
            continue;
        };
        back.push(w);
        for (k, n) in r.statuses {
            *report.statuses.entry(k).or_default() += n;
        }
        report.responses += r.latencies_us.len() as u64;
        report.unexpected_count += r.unexpected_count;
        for u in r.unexpected {
            if report.unexpected.len() < 20 {
                report.unexpected.push(u);
            }
        }
        report.transport_errors += r.transport_errors;
        for t in r.transport_samples {
            if report.transport_samples.len() < 5 {
                report.transport_samples.push(t);
            }
        }
        report.latencies_us.extend(r.latencies_us);
        report.acks.extend(r.acks);
    }
    stop.store(true, Ordering::Relaxed);
    report.rss_kib = sampler.await.unwrap_or_default();
    report.latencies_us.sort_unstable();
    report.elapsed = started.elapsed();
    (report, back)
}

impl LoadReport {
    /// Median `VmRSS` of the second third of the run and of the last third, in KiB (the first
    /// third is warm-up: caches and pools fill). `None` with fewer than 6 samples.
    pub fn rss_thirds(&self) -> Option<(u64, u64)> {
        let n = self.rss_kib.len();
        if n < 6 {
            return None;
        }
        let median = |s: &[(f64, u64)]| {
            let mut v: Vec<u64> = s.iter().map(|r| r.1).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        Some((
            median(&self.rss_kib[n / 3..2 * n / 3]),
            median(&self.rss_kib[2 * n / 3..]),
        ))
    }

    /// Memory is flat: the last third's median RSS is within 25% (and at most 32 MiB) of the
    /// second third's. `true` when there are too few samples to tell.
    pub fn memory_flat(&self) -> bool {
        self.rss_thirds()
            .is_none_or(|(mid, last)| last <= mid + (mid / 4).clamp(1024, 32 * 1024))
    }
}
