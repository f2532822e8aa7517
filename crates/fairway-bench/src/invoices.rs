//! The gapless-invoice contention workload (issue 15): `clients` concurrent `CreateInvoice`
//! commands (the `invoices-create-invoice` module) through `fairway-runtime` on a fresh embedded
//! store, released together behind a barrier, once per round. Every command reads the last
//! invoice number and appends the next one on the condition that no invoice was created since,
//! so all but one of each wave lose and retry within the command's retry budget (2 s by default).
//!
//! Per round it reports the successes, the gaps and duplicates among the stored numbers (both
//! must be 0: the numbers are exactly `1..=successes`), the attempts per command (p50 and max)
//! and the wall-clock duration. Run it with `fairway-bench --invoices`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use dcb_core::{Query, ReadOptions};
use fairway_runtime::Runtime;
use futures::StreamExt as _;
use invoices_create_invoice::CreateInvoice;
use serde_json::json;

/// What one round measured.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceRound {
    /// Commands that returned an invoice number.
    pub successes: usize,
    /// Commands that returned an error (the retry budget ran out, or the store failed).
    pub failures: usize,
    /// Numbers missing from `1..=max` among the stored invoices.
    pub gaps: usize,
    /// Stored invoices whose number another stored invoice has too.
    pub duplicates: usize,
    /// Median attempts of the successful commands.
    pub attempts_p50: u32,
    /// Most attempts any successful command took.
    pub attempts_max: u32,
    /// From releasing the barrier to the last command's answer, in seconds.
    pub seconds: f64,
}

impl InvoiceRound {
    /// The round as one JSON line.
    pub fn to_json(&self, round: usize, clients: usize) -> serde_json::Value {
        json!({"bench": "fairway-bench", "workload": "invoices", "round": round,
               "clients": clients, "successes": self.successes, "failures": self.failures,
               "gaps": self.gaps, "duplicates": self.duplicates,
               "attempts_p50": self.attempts_p50, "attempts_max": self.attempts_max,
               "seconds": self.seconds})
    }
}

/// Gaps and duplicates among `numbers` (which should be exactly `1..=numbers.len()`).
pub fn gaps_and_duplicates(numbers: &[u64]) -> (usize, usize) {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    let duplicates = sorted.windows(2).filter(|w| w[0] == w[1]).count();
    sorted.dedup();
    let max = sorted.last().copied().unwrap_or(0);
    let gaps = usize::try_from(max)
        .unwrap_or(usize::MAX)
        .saturating_sub(sorted.len());
    (gaps, duplicates)
}

/// One round: `clients` concurrent invoice creations on a fresh embedded store in `dir`.
pub fn round(dir: &std::path::Path, clients: usize) -> anyhow::Result<InvoiceRound> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let store = dcb_embedded::EmbeddedStore::open(dir).context("opening the embedded store")?;
        let rt = Runtime::new(Arc::new(store));
        let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
        let mut tasks = Vec::with_capacity(clients);
        for i in 0..clients {
            let (rt, barrier) = (rt.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let cmd = CreateInvoice {
                    customer: format!("customer-{i}"),
                    amount_cents: 100,
                };
                barrier.wait().await;
                rt.execute(&cmd, &()).await
            }));
        }
        barrier.wait().await;
        let started = Instant::now();
        let mut outputs = Vec::new();
        let mut attempts = Vec::new();
        let mut failures = 0;
        for task in tasks {
            match task.await.context("a client task panicked")? {
                Ok(done) => {
                    outputs.push(done.output);
                    attempts.push(done.attempts);
                }
                Err(error) => {
                    eprintln!("  invoice command failed: {error}");
                    failures += 1;
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();

        let mut stored = Vec::new();
        let mut stream = rt
            .store()
            .read(Query::of_type("InvoiceCreated"), ReadOptions::new())
            .await?;
        while let Some(event) = stream.next().await {
            let event = event?;
            let data: serde_json::Value = serde_json::from_slice(&event.event.data)
                .context("an InvoiceCreated event is not JSON")?;
            let number = data["invoiceNumber"]
                .as_u64()
                .with_context(|| format!("no invoiceNumber in {data}"))?;
            stored.push(number);
        }
        let mut answered = outputs.clone();
        answered.sort_unstable();
        let mut in_store = stored.clone();
        in_store.sort_unstable();
        if answered != in_store {
            bail!("the numbers answered {answered:?} are not the numbers stored {in_store:?}");
        }
        let (gaps, duplicates) = gaps_and_duplicates(&stored);
        attempts.sort_unstable();
        Ok(InvoiceRound {
            successes: outputs.len(),
            failures,
            gaps,
            duplicates,
            attempts_p50: attempts.get(attempts.len() / 2).copied().unwrap_or(0),
            attempts_max: attempts.last().copied().unwrap_or(0),
            seconds,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn gaps_and_duplicates_are_counted() {
        assert_eq!(gaps_and_duplicates(&[1, 2, 3]), (0, 0));
        assert_eq!(gaps_and_duplicates(&[3, 1]), (1, 0));
        assert_eq!(gaps_and_duplicates(&[1, 2, 2, 4]), (1, 1));
        assert_eq!(gaps_and_duplicates(&[]), (0, 0));
    }

    #[test]
    fn a_small_round_numbers_every_invoice_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = round(dir.path(), 8).unwrap();
        assert_eq!(r.successes + r.failures, 8, "{r:?}");
        assert_eq!((r.gaps, r.duplicates), (0, 0), "{r:?}");
        assert!(r.successes >= 1 && r.attempts_max >= 1, "{r:?}");
    }
}
