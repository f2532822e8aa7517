//! The measured scenarios. Each runs against one freshly opened store and returns its metrics.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::measure::{IoCounters, dir_size};
use crate::stats::percentile_us;
use crate::{BenchError, BenchEvent, BenchStore, Guard, Outcome};

/// Payload size of every benchmark event.
pub const PAYLOAD: usize = 100;

/// Whether a bigger figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughputs.
    Higher,
    /// Latencies, bytes.
    Lower,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Workload name.
    pub workload: &'static str,
    /// Metric name, unique within the workload.
    pub name: String,
    /// The figure.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// Direction.
    pub better: Better,
}

fn metric(
    workload: &'static str,
    name: impl Into<String>,
    value: f64,
    unit: &'static str,
    better: Better,
) -> Metric {
    Metric {
        workload,
        name: name.into(),
        value,
        unit,
        better,
    }
}

/// Sizes of the workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Single-event unconditional appends.
    pub single_appends: usize,
    /// 100-event unconditional appends.
    pub batch_appends: usize,
    /// Conditional cycles per client for 1, 8 and 64 clients.
    pub conditional_per_client: [usize; 3],
    /// Contention rounds (16 clients each).
    pub contention_rounds: usize,
    /// Events loaded before the read workload (spread over 10 000 tags).
    pub read_population: usize,
    /// Waves of 50 parallel todo scenarios.
    pub todo_waves: usize,
    /// Events per tag-count probe.
    pub tag_probe_events: usize,
    /// Events loaded for the peak-RSS read.
    pub rss_events: usize,
}

impl Sizes {
    /// Small enough for a smoke run in well under three minutes.
    pub const QUICK: Sizes = Sizes {
        single_appends: 300,
        batch_appends: 30,
        conditional_per_client: [200, 30, 5],
        contention_rounds: 40,
        read_population: 20_000,
        todo_waves: 1,
        tag_probe_events: 1_000,
        rss_events: 100_000,
    };

    /// The full run.
    pub const FULL: Sizes = Sizes {
        single_appends: 2_000,
        batch_appends: 200,
        conditional_per_client: [1_000, 150, 25],
        contention_rounds: 200,
        read_population: 100_000,
        todo_waves: 3,
        tag_probe_events: 5_000,
        rss_events: 1_000_000,
    };
}

/// The workloads, in run order.
pub const WORKLOADS: [&str; 6] = [
    "unconditional",
    "conditional",
    "contention",
    "reads",
    "todo",
    "tags",
];

/// Runs workload `name` against `store`, whose data directory is `dir`.
pub fn run(
    name: &str,
    store: &dyn BenchStore,
    dir: &std::path::Path,
    sizes: &Sizes,
) -> Result<Vec<Metric>, BenchError> {
    match name {
        "unconditional" => unconditional(store, dir, sizes),
        "conditional" => conditional(store, sizes),
        "contention" => contention(store, sizes),
        "reads" => reads(store, sizes),
        "todo" => todo(store, sizes),
        "tags" => tags(store, sizes),
        other => Err(BenchError::Check(format!("unknown workload {other}"))),
    }
}

/// A payload of [`PAYLOAD`] bytes.
pub fn payload(n: u64) -> Vec<u8> {
    let mut p = format!("{{\"n\":{n},\"pad\":\"").into_bytes();
    p.resize(PAYLOAD - 2, b'x');
    p.extend_from_slice(b"\"}");
    p
}

fn event(ty: &str, tags: Vec<String>, n: u64) -> BenchEvent {
    BenchEvent::new(ty, tags, payload(n))
}

fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn written(o: Outcome, what: &str) -> Result<u64, BenchError> {
    match o {
        Outcome::Written(p) => Ok(p),
        Outcome::Conflict => Err(BenchError::Check(format!(
            "{what}: unexpected condition failure"
        ))),
    }
}

/// Workload 1, unconditional appends from one client: 1 event and 100 events per append; bytes written
/// per single-event durable append.
pub fn unconditional(
    store: &dyn BenchStore,
    dir: &std::path::Path,
    s: &Sizes,
) -> Result<Vec<Metric>, BenchError> {
    const W: &str = "unconditional";
    let (app0, alloc0) = dir_size(dir)?;
    let io0 = IoCounters::now()?;
    let t = Instant::now();
    for i in 0..s.single_appends {
        let i = i as u64;
        written(
            store.append(
                vec![event("Registered", vec![format!("stream:{}", i % 1000)], i)],
                None,
            )?,
            W,
        )?;
    }
    let d1 = t.elapsed();
    let io = IoCounters::now()?.since(&io0);
    let (app1, alloc1) = dir_size(dir)?;
    let n = s.single_appends as f64;
    let t = Instant::now();
    for b in 0..s.batch_appends {
        let batch = (0..100u64)
            .map(|k| {
                let i = (b as u64) * 100 + k;
                event("Registered", vec![format!("stream:{}", i % 1000)], i)
            })
            .collect();
        written(store.append(batch, None)?, W)?;
    }
    let d100 = t.elapsed();
    Ok(vec![
        metric(
            W,
            "1-event appends/s",
            per_s(s.single_appends, d1),
            "appends/s",
            Better::Higher,
        ),
        metric(
            W,
            "100-event appends/s",
            per_s(s.batch_appends, d100),
            "appends/s",
            Better::Higher,
        ),
        metric(
            W,
            "100-event batches: events/s",
            per_s(s.batch_appends * 100, d100),
            "events/s",
            Better::Higher,
        ),
        metric(
            W,
            "bytes via write() per 1-event append (wchar)",
            io.wchar as f64 / n,
            "B",
            Better::Lower,
        ),
        metric(
            W,
            "bytes dirtied per 1-event append (write_bytes)",
            io.write_bytes as f64 / n,
            "B",
            Better::Lower,
        ),
        metric(
            W,
            "write syscalls per 1-event append",
            io.syscw as f64 / n,
            "calls",
            Better::Lower,
        ),
        metric(
            W,
            "dir growth per 1-event append (apparent)",
            app1.saturating_sub(app0) as f64 / n,
            "B",
            Better::Lower,
        ),
        metric(
            W,
            "dir growth per 1-event append (allocated)",
            alloc1.saturating_sub(alloc0) as f64 / n,
            "B",
            Better::Lower,
        ),
    ])
}

/// Workload 2, conditional appends: each client reads its own tag and appends on condition "nothing new
/// for my tag after the head I read"; 1, 8 and 64 clients.
pub fn conditional(store: &dyn BenchStore, s: &Sizes) -> Result<Vec<Metric>, BenchError> {
    const W: &str = "conditional";
    let mut out = Vec::new();
    for (clients, per_client) in [1usize, 8, 64].into_iter().zip(s.conditional_per_client) {
        let t = Instant::now();
        let lat = std::thread::scope(|scope| -> Result<Vec<Duration>, BenchError> {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    scope.spawn(move || -> Result<Vec<Duration>, BenchError> {
                        let tag = format!("client:{clients}:{c}");
                        let mut lat = Vec::with_capacity(per_client);
                        for i in 0..per_client {
                            let t = Instant::now();
                            let r = store.read_tag(&tag)?;
                            if r.events != i as u64 {
                                return Err(BenchError::Check(format!(
                                    "{tag}: read {} events, expected {i}",
                                    r.events
                                )));
                            }
                            let g = Guard {
                                tag: tag.clone(),
                                after: r.head,
                            };
                            written(
                                store.append(
                                    vec![event("Decided", vec![tag.clone()], i as u64)],
                                    Some(g),
                                )?,
                                W,
                            )?;
                            lat.push(t.elapsed());
                        }
                        Ok(lat)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for h in handles {
                all.extend(
                    h.join()
                        .map_err(|_| BenchError::Check("client panicked".into()))??,
                );
            }
            Ok(all)
        })?;
        let d = t.elapsed();
        let mut lat = lat;
        let n = lat.len();
        out.push(metric(
            W,
            format!("{clients} clients: appends/s"),
            per_s(n, d),
            "appends/s",
            Better::Higher,
        ));
        out.push(metric(
            W,
            format!("{clients} clients: p50"),
            percentile_us(&mut lat, 50.0),
            "us",
            Better::Lower,
        ));
        out.push(metric(
            W,
            format!("{clients} clients: p99"),
            percentile_us(&mut lat, 99.0),
            "us",
            Better::Lower,
        ));
    }
    Ok(out)
}

/// Workload 3, contention: 16 clients race for one unique tag per round; exactly one may win.
pub fn contention(store: &dyn BenchStore, s: &Sizes) -> Result<Vec<Metric>, BenchError> {
    const W: &str = "contention";
    const CLIENTS: usize = 16;
    let rounds = s.contention_rounds;
    let winners: Vec<AtomicU32> = (0..rounds).map(|_| AtomicU32::new(0)).collect();
    let barrier = Barrier::new(CLIENTS);
    let t = Instant::now();
    std::thread::scope(|scope| -> Result<(), BenchError> {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (winners, barrier) = (&winners, &barrier);
                scope.spawn(move || -> Result<(), BenchError> {
                    for (r, won) in winners.iter().enumerate() {
                        barrier.wait();
                        let tag = format!("username:{r}");
                        let seen = store.read_tag(&tag)?;
                        if seen.events > 0 {
                            continue; // Taken: this client's decision is "no".
                        }
                        let g = Guard {
                            tag: tag.clone(),
                            after: seen.head,
                        };
                        if let Outcome::Written(_) = store
                            .append(vec![event("UsernameClaimed", vec![tag], c as u64)], Some(g))?
                        {
                            won.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| BenchError::Check("client panicked".into()))??;
        }
        Ok(())
    })?;
    let d = t.elapsed();
    let bad: Vec<(usize, u32)> = winners
        .iter()
        .map(|w| w.load(Ordering::Relaxed))
        .enumerate()
        .filter(|&(_, w)| w != 1)
        .collect();
    if !bad.is_empty() {
        return Err(BenchError::Check(format!(
            "{}: rounds without exactly one winner: {bad:?}",
            store.name()
        )));
    }
    let total: u32 = winners.iter().map(|w| w.load(Ordering::Relaxed)).sum();
    Ok(vec![
        metric(
            W,
            "rounds/s (16 clients)",
            per_s(rounds, d),
            "rounds/s",
            Better::Higher,
        ),
        metric(
            W,
            "winners per round (checked == 1)",
            f64::from(total) / rounds as f64,
            "winners",
            Better::Higher,
        ),
    ])
}

/// Loads `n` events over 10 000 tags in 1000-event appends.
pub fn populate(store: &dyn BenchStore, n: usize, tag_count: usize) -> Result<(), BenchError> {
    let mut i = 0u64;
    while (i as usize) < n {
        let k = 1000.min(n - i as usize) as u64;
        let batch = (i..i + k)
            .map(|j| event("Loaded", vec![format!("tag:{}", j % tag_count as u64)], j))
            .collect();
        written(store.append(batch, None)?, "populate")?;
        i += k;
    }
    Ok(())
}

/// Workload 4, selective reads (1000 reads of one tag among 10 000) and a full scan.
pub fn reads(store: &dyn BenchStore, s: &Sizes) -> Result<Vec<Metric>, BenchError> {
    const W: &str = "reads";
    const TAGS: usize = 10_000;
    populate(store, s.read_population, TAGS)?;
    let per_tag = (s.read_population / TAGS) as u64;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let t = Instant::now();
    let mut events = 0u64;
    for _ in 0..1000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let tag = format!("tag:{}", (x >> 33) % TAGS as u64);
        let r = store.read_tag(&tag)?;
        if r.events != per_tag {
            return Err(BenchError::Check(format!(
                "{tag}: {} events, expected {per_tag}",
                r.events
            )));
        }
        events += r.events;
    }
    let d = t.elapsed();
    let t = Instant::now();
    let scan = store.scan()?;
    let ds = t.elapsed();
    if scan.events != s.read_population as u64 {
        return Err(BenchError::Check(format!(
            "scan: {} events, expected {}",
            scan.events, s.read_population
        )));
    }
    Ok(vec![
        metric(
            W,
            "selective reads/s (1 tag of 10k)",
            per_s(1000, d),
            "reads/s",
            Better::Higher,
        ),
        metric(
            W,
            "selective read events/s",
            events as f64 / d.as_secs_f64().max(1e-9),
            "events/s",
            Better::Higher,
        ),
        metric(
            W,
            "full scan events/s",
            per_s(scan.events as usize, ds),
            "events/s",
            Better::Higher,
        ),
    ])
}

/// One step of the todo scenario: read the list's events, then append on condition.
fn todo_step(
    store: &dyn BenchStore,
    list: &str,
    ty: &str,
    n: u64,
    expect: u64,
) -> Result<(), BenchError> {
    let r = store.read_tag(list)?;
    if r.events != expect {
        return Err(BenchError::Check(format!(
            "{list}: {} events before {ty}, expected {expect}",
            r.events
        )));
    }
    let g = Guard {
        tag: list.to_owned(),
        after: r.head,
    };
    let item = format!("item:{list}:{}", n % 10);
    written(
        store.append(vec![event(ty, vec![list.to_owned(), item], n)], Some(g))?,
        "todo",
    )?;
    Ok(())
}

/// Workload 5, the todo scenario: create a list, 10 x (read, add item), 3 updates, 2 deletions, delete
/// the list, each with its read; 50 scenarios in parallel.
pub fn todo(store: &dyn BenchStore, s: &Sizes) -> Result<Vec<Metric>, BenchError> {
    const W: &str = "todo";
    const PARALLEL: usize = 50;
    let done = AtomicU64::new(0);
    let mut lat = Vec::new();
    let t = Instant::now();
    for wave in 0..s.todo_waves {
        let l = std::thread::scope(|scope| -> Result<Vec<Duration>, BenchError> {
            let handles: Vec<_> = (0..PARALLEL)
                .map(|c| {
                    let done = &done;
                    scope.spawn(move || -> Result<Duration, BenchError> {
                        let list = format!("list:{wave}:{c}");
                        let t = Instant::now();
                        let mut n = 0u64;
                        let mut step = |ty: &str| -> Result<(), BenchError> {
                            todo_step(store, &list, ty, n, n)?;
                            n += 1;
                            Ok(())
                        };
                        step("ListCreated")?;
                        for _ in 0..10 {
                            step("ItemAdded")?;
                        }
                        for _ in 0..3 {
                            step("ItemUpdated")?;
                        }
                        for _ in 0..2 {
                            step("ItemDeleted")?;
                        }
                        step("ListDeleted")?;
                        done.fetch_add(1, Ordering::Relaxed);
                        Ok(t.elapsed())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| BenchError::Check("client panicked".into()))?
                })
                .collect()
        })?;
        lat.extend(l);
    }
    let d = t.elapsed();
    let n = done.load(Ordering::Relaxed) as usize;
    Ok(vec![
        metric(
            W,
            "scenarios/s (50 parallel)",
            per_s(n, d),
            "scenarios/s",
            Better::Higher,
        ),
        metric(
            W,
            "scenario p99",
            percentile_us(&mut lat, 99.0) / 1000.0,
            "ms",
            Better::Lower,
        ),
    ])
}

/// Index cost per event with 1, 3 and 10 tags: bytes written per event and (where the store
/// reports it) in-memory index entries per event.
pub fn tags(store: &dyn BenchStore, s: &Sizes) -> Result<Vec<Metric>, BenchError> {
    const W: &str = "tags";
    let mut out = Vec::new();
    let mut base = 0u64;
    for n_tags in [1usize, 3, 10] {
        let entries0 = store.index_entries();
        let io0 = IoCounters::now()?;
        let mut i = 0usize;
        while i < s.tag_probe_events {
            let k = 100.min(s.tag_probe_events - i);
            let batch = (i..i + k)
                .map(|j| {
                    let j = base + j as u64;
                    event(
                        "Tagged",
                        (0..n_tags).map(|t| format!("k{t}:{}", j % 100)).collect(),
                        j,
                    )
                })
                .collect();
            written(store.append(batch, None)?, W)?;
            i += k;
        }
        base += s.tag_probe_events as u64;
        let io = IoCounters::now()?.since(&io0);
        let n = s.tag_probe_events as f64;
        out.push(metric(
            W,
            format!("{n_tags} tags: bytes via write() per event"),
            io.wchar as f64 / n,
            "B",
            Better::Lower,
        ));
        out.push(metric(
            W,
            format!("{n_tags} tags: bytes dirtied per event"),
            io.write_bytes as f64 / n,
            "B",
            Better::Lower,
        ));
        if let (Some(a), Some(b)) = (entries0, store.index_entries()) {
            out.push(metric(
                W,
                format!("{n_tags} tags: in-memory index entries per event"),
                b.saturating_sub(a) as f64 / n,
                "entries",
                Better::Lower,
            ));
        }
    }
    Ok(out)
}
