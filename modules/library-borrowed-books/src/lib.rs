//! Pattern: **view** (materialized). Slice: library — the books a borrower holds.
//!
//! `GET /api/borrowers/{borrowerId}/books` answers 200 `{"books":["b1","b2"]}` (in borrow
//! order; `[]` for a borrower holding nothing) from the `library-borrowed-books` read model,
//! kept current in the background from `BookBorrowed` and `BookReturned`.
//!
//! Size: not paged, because the domain caps it: a borrower holds at most
//! [`MAX_BOOKS_PER_BORROWER`] (5) books (the borrow command refuses a sixth with 409), so the
//! response is at most [`MAX_RESPONSE_BYTES`] (346 bytes, five 64-byte ids).
//!
//! Consistency: the read model lags the store by a few milliseconds. A client that wants to see
//! its own write passes the position a command returned (`position` in the borrow response, the
//! `fairway-position` header of a return): `?after=<position>` waits (up to five seconds, then
//! 503 `view_not_ready` with `Retry-After`) until the view has processed it. Without `after`
//! the request waits the same way for the store's head at the time it arrived. While the view
//! is being rebuilt, both wait until the rebuild has passed that position, so an answer never
//! comes from a partly rebuilt read model.
//!
//! Given/when/then:
//!
//! ```
//! use library_events::{BookBorrowed, BookId, BookReturned, BorrowerId};
//! use library_borrowed_books::{BorrowedBooks, Holdings};
//! use fairway_runtime::testing::given;
//! let (b1, b2, ann) = (BookId::parse("b1")?, BookId::parse("b2")?, BorrowerId::parse("ann")?);
//! // Given ann borrowed b1 and b2 and returned b1, then ann holds b2.
//! given([BookBorrowed { book_id: b1.clone(), borrower_id: ann.clone() },
//!        BookBorrowed { book_id: b2.clone(), borrower_id: ann.clone() }])
//!     .and(BookReturned { book_id: b1, borrower_id: ann })
//!     .view(BorrowedBooks, "ann")
//!     .then(Some(Holdings { books: vec![b2] }));
//! # Ok::<(), library_events::IdError>(())
//! ```

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query as UrlQuery, State};
use dcb_core::Position;
use fairway_runtime::http::ApiError;
use fairway_runtime::{MaterializedView, Module, ModuleKind, Runtime, Sequenced};
use library_events::{BookId, BorrowerId, LoanEvents, MAX_BOOKS_PER_BORROWER, MAX_ID_LEN};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The view's name (its storage is `view:library-borrowed-books`).
pub const VIEW_NAME: &str = "library-borrowed-books";

/// How long a request waits for the view.
pub const WAIT: Duration = Duration::from_secs(5);

/// The largest response body: `{"books":[...]}` with [`MAX_BOOKS_PER_BORROWER`] ids of
/// [`MAX_ID_LEN`] bytes (ids are ASCII that JSON does not escape).
pub const MAX_RESPONSE_BYTES: usize = 11 + MAX_BOOKS_PER_BORROWER * (MAX_ID_LEN + 3);

/// The read model: borrower id → the books they hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct BorrowedBooks;

/// What one borrower holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Holdings {
    /// The books, in borrow order.
    #[schemars(with = "Vec<String>")]
    pub books: Vec<BookId>,
}

impl MaterializedView for BorrowedBooks {
    type Events = LoanEvents;
    type State = Holdings;

    fn name(&self) -> &str {
        VIEW_NAME
    }

    fn keys(&self, e: &Sequenced<LoanEvents>) -> Vec<String> {
        vec![match &e.event {
            LoanEvents::BookBorrowed(b) => b.borrower_id.to_string(),
            LoanEvents::BookReturned(r) => r.borrower_id.to_string(),
        }]
    }

    fn evolve(&self, _key: &str, state: &mut Option<Holdings>, e: &Sequenced<LoanEvents>) {
        match &e.event {
            LoanEvents::BookBorrowed(b) => {
                let h = state.get_or_insert_with(Holdings::default);
                if !h.books.contains(&b.book_id) {
                    h.books.push(b.book_id.clone());
                }
            }
            LoanEvents::BookReturned(r) => {
                if let Some(h) = state.as_mut() {
                    h.books.retain(|b| *b != r.book_id);
                    if h.books.is_empty() {
                        *state = None;
                    }
                }
            }
        }
    }
}

/// `?after=<position>`: wait until the view has processed this position.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AfterParam {
    /// A position a command returned.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub after: Option<Position>,
}

/// The path parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BorrowerPath {
    /// The borrower.
    #[serde(rename = "borrowerId")]
    #[schemars(regex(pattern = library_events::ID_PATTERN))]
    pub borrower_id: String,
}
async fn books(
    State(rt): State<Runtime>,
    Path(BorrowerPath { borrower_id }): Path<BorrowerPath>,
    UrlQuery(params): UrlQuery<AfterParam>,
) -> Result<Json<Holdings>, ApiError> {
    let borrower =
        BorrowerId::parse(&borrower_id).map_err(|e| ApiError::bad_field("borrowerId", e))?;
    let _reading = rt.view_ready(VIEW_NAME, params.after, WAIT).await?;
    let holdings = rt.view_get(&BorrowedBooks, borrower.as_str()).await?;
    Ok(Json(holdings.unwrap_or_default()))
}

/// The module: `GET /api/borrowers/{borrowerId}/books` and the view's worker.
pub fn module() -> Module {
    Module::new(ModuleKind::View, "library-borrowed-books")
        .describe("The books each borrower holds, kept current from borrows and returns")
        .get("/api/borrowers/{borrowerId}/books", books)
        .materialized(BorrowedBooks)
}
