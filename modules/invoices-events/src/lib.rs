//! `invoices-events`: the events of the invoices context (dcb.events' gapless invoice numbers
//! scenario) — an invoice is created with the next number — and the `last_invoice_number`
//! projection.
//!
//! Layer: a context's shared events crate, above `fairway-runtime`. It must not depend on any
//! module, on a backend, or on anything of another context.
//!
//! Tags: `invoice:<number>`. The numbering reads only the last `InvoiceCreated` (backwards with
//! a limit of one), and its append condition fails on any invoice created after it: two
//! concurrent creations never get the same number, and no number is skipped.
//!
//! ```
//! use invoices_events::last_invoice_number;
//! assert_eq!(last_invoice_number().query(), &dcb_core::Query::of_type("InvoiceCreated"));
//! ```

use dcb_core::Query;
use fairway_runtime::{DomainEvent, Projection, tag};
use serde::{Deserialize, Serialize};

/// An invoice was created with the next number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceCreated {
    /// Its number: 1 for the first, then one more each time, never a gap.
    pub invoice_number: u64,
    /// Who is billed.
    pub customer: String,
    /// The amount, in cents.
    pub amount_cents: u64,
}

impl DomainEvent for InvoiceCreated {
    const TYPE: &'static str = "InvoiceCreated";
    fn tags(&self) -> Vec<String> {
        vec![tag("invoice", self.invoice_number)]
    }
}

fairway_runtime::event_set! {
    /// Every event of the invoices context.
    pub enum InvoiceEvents {
        InvoiceCreated(InvoiceCreated),
    }
}

/// The number of the last invoice created (0 before the first): only the last `InvoiceCreated`
/// is read.
pub fn last_invoice_number() -> Projection<InvoiceEvents, u64> {
    Projection::new(Query::of_type(InvoiceCreated::TYPE), 0, |n, e| {
        match &e.event {
            InvoiceEvents::InvoiceCreated(i) => *n = i.invoice_number,
        }
    })
    .last(1)
}
