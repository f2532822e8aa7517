//! Pattern: **command**. Slice: invoices — create an invoice with the next gapless number.
//!
//! `POST /api/invoices` with `{"customer","amountCents"}` appends `InvoiceCreated` and answers
//! 201 `{"invoiceNumber","position"}`. The number is the decision's **output**: `decide` returns
//! it with the event and `execute` hands it back, so the handler never re-reads the event.
//!
//! Decision model: `last_invoice_number` (the last `InvoiceCreated` only). Under contention the
//! losers re-run within the retry budget (2 s by default) and take the next number: 50
//! concurrent creations give 1..=50 (see this crate's tests and `fairway-bench --invoices`).
//!
//! Given/when/then:
//!
//! ```
//! use invoices_create_invoice::CreateInvoice;
//! use invoices_events::InvoiceCreated;
//! use fairway_runtime::testing::given;
//! let created = |n| InvoiceCreated { invoice_number: n, customer: "acme".into(), amount_cents: 100 };
//! given([created(1), created(2)])
//!     .when(CreateInvoice { customer: "acme".into(), amount_cents: 100 })
//!     .then_output([created(3)], 3);
//! ```

use axum::extract::State;
use fairway_runtime::http::{ApiError, Created, JsonBody};
use fairway_runtime::{Ctx, Decide, Decision, Module, ModuleKind, Projection, Runtime};
use invoices_events::{InvoiceCreated, InvoiceEvents, last_invoice_number};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest customer name accepted (in bytes).
pub const MAX_CUSTOMER_LEN: usize = 200;

/// Create an invoice for `customer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateInvoice {
    /// Who is billed.
    pub customer: String,
    /// The amount, in cents.
    pub amount_cents: u64,
}

impl Decide for CreateInvoice {
    type Events = InvoiceEvents;
    type Model = Projection<InvoiceEvents, u64>;
    type Output = u64;
    type Error = std::convert::Infallible;
    type Deps = ();

    fn model(&self) -> Self::Model {
        last_invoice_number()
    }

    fn decide(&self, last: &u64, _: &Ctx<'_, ()>) -> Result<Decision<u64>, Self::Error> {
        let number = last.saturating_add(1);
        Ok(Decision::new(
            vec![
                InvoiceCreated {
                    invoice_number: number,
                    customer: self.customer.clone(),
                    amount_cents: self.amount_cents,
                }
                .into(),
            ],
            number,
        ))
    }
}

/// The request body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    /// Who is billed.
    pub customer: String,
    /// The amount, in cents.
    pub amount_cents: u64,
}

async fn create(
    State(rt): State<Runtime>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Created<InvoiceCreatedBody>, ApiError> {
    let customer = body.customer.trim();
    if customer.is_empty() || customer.len() > MAX_CUSTOMER_LEN {
        return Err(ApiError::bad_field(
            "customer",
            format!("must be 1 to {MAX_CUSTOMER_LEN} bytes"),
        ));
    }
    let cmd = CreateInvoice {
        customer: customer.to_owned(),
        amount_cents: body.amount_cents,
    };
    let done = rt.execute(&cmd, &()).await?;
    Ok(Created(InvoiceCreatedBody {
        invoice_number: done.output,
        position: done.last(),
    }))
}

/// The answer: the invoice's number and the position of its creation.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceCreatedBody {
    /// The invoice's number: the next after the last one, without gaps.
    pub invoice_number: u64,
    /// The creation's position.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/invoices`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "invoices-create-invoice")
        .describe("Create an invoice with the next gapless number")
        .post("/api/invoices", create)
        .command::<CreateInvoice>()
        .appends::<InvoiceCreated>()
}
