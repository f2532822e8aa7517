//! Given/when/then for gapless invoice numbers, and 50 concurrent creations.

use fairway_runtime::testing::{given, nothing};
use invoices_create_invoice::CreateInvoice;
use invoices_events::InvoiceCreated;

fn create() -> CreateInvoice {
    CreateInvoice {
        customer: "acme".into(),
        amount_cents: 1250,
    }
}

fn created(n: u64) -> InvoiceCreated {
    InvoiceCreated {
        invoice_number: n,
        customer: "acme".into(),
        amount_cents: 1250,
    }
}

#[test]
fn the_first_invoice_is_number_one() {
    nothing().when(create()).then_output([created(1)], 1);
}

#[test]
fn the_next_number_follows_the_last() {
    given([created(1), created(2), created(3)])
        .when(create())
        .then_output([created(4)], 4);
}

/// 50 concurrent creations: all succeed within the retry budget, numbers 1..=50.
#[test]
fn fifty_concurrent_creations_get_gapless_numbers() {
    let race = nothing().race(50, |_| create()).then_successes(50);
    let mut numbers: Vec<u64> = race
        .outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|d| d.output))
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=50).collect::<Vec<u64>>());
    assert_eq!(race.appended.len(), 50);
}
