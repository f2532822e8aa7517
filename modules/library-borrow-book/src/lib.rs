//! Pattern: **command**. Slice: library — borrow a book.
//!
//! `POST /api/books/{bookId}/borrow` with `{"borrowerId"}` appends `BookBorrowed` and answers
//! 201 `{"bookId","borrowerId","position"}`; `position` can be handed to
//! `GET /api/borrowers/{borrowerId}/books?after=<position>` for read-your-writes.
//!
//! Rules, each checked by its own read and guarded by its own append condition:
//! - the book's **last event** (read backwards with a limit of one) must not be a borrow:
//!   otherwise 409 `book_already_borrowed`;
//! - the borrower must hold fewer than five books (their `borrower:<id>` history):
//!   otherwise 409 `borrower_limit_reached`.
//!
//! Concurrent borrowers of one book: each read sees the book free, the first append wins, the
//! others' conditions fail, they re-run, see the borrow and are rejected: exactly one wins.
//!
//! Given/when/then:
//!
//! ```
//! use library_events::{BookBorrowed, BookId, BorrowerId};
//! use library_borrow_book::{BorrowBook, BorrowError};
//! use fairway_runtime::testing::given;
//! let (b1, ann, bob) = (BookId::parse("b1")?, BorrowerId::parse("ann")?, BorrowerId::parse("bob")?);
//! // Given ann borrowed b1, when bob borrows b1, then it is rejected.
//! given([BookBorrowed { book_id: b1.clone(), borrower_id: ann }])
//!     .when(BorrowBook { book_id: b1.clone(), borrower_id: bob.clone() })
//!     .then_err(BorrowError::BookAlreadyBorrowed(b1));
//! # Ok::<(), library_events::IdError>(())
//! ```

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, State};
use dcb_core::Query;
use fairway_runtime::http::{ApiError, Created, JsonBody};
use fairway_runtime::{
    Command, Ctx, DomainError, Module, ModuleKind, NewEvent, Read, Runtime, Sequenced,
};
use library_events::{
    BookBorrowed, BookId, BorrowerId, LoanEvents, MAX_BOOKS_PER_BORROWER, book_tag, borrower_tag,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Borrow `book_id` for `borrower_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BorrowBook {
    /// The book.
    pub book_id: BookId,
    /// Who borrows it.
    pub borrower_id: BorrowerId,
}

/// Why a borrow is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BorrowError {
    /// The book's last event is a borrow: someone has it.
    #[error("book {0} is already borrowed")]
    BookAlreadyBorrowed(BookId),
    /// The borrower already holds the maximum number of books.
    #[error("borrower {0} already holds {MAX_BOOKS_PER_BORROWER} books")]
    BorrowerLimitReached(BorrowerId),
}

impl DomainError for BorrowError {
    fn code(&self) -> &'static str {
        match self {
            BorrowError::BookAlreadyBorrowed(_) => "book_already_borrowed",
            BorrowError::BorrowerLimitReached(_) => "borrower_limit_reached",
        }
    }
}

/// What the decision knows: who holds each book seen, and the books each borrower seen holds.
#[derive(Debug, Default)]
pub struct Loans {
    holder: HashMap<BookId, Option<BorrowerId>>,
    held: HashMap<BorrowerId, BTreeSet<BookId>>,
}

impl Command for BorrowBook {
    type Events = LoanEvents;
    type State = Loans;
    type Error = BorrowError;
    type Deps = ();

    /// The book's history; only its last event is read.
    fn query(&self) -> Query {
        Query::tagged(book_tag(&self.book_id))
    }

    fn last(&self) -> Option<u64> {
        Some(1)
    }

    /// The borrower's history, to count what they hold.
    fn more_reads(&self) -> Vec<Read> {
        vec![Read::new(Query::tagged(borrower_tag(&self.borrower_id)))]
    }

    fn evolve(loans: &mut Loans, e: &Sequenced<LoanEvents>) {
        match &e.event {
            LoanEvents::BookBorrowed(b) => {
                loans
                    .holder
                    .insert(b.book_id.clone(), Some(b.borrower_id.clone()));
                loans
                    .held
                    .entry(b.borrower_id.clone())
                    .or_default()
                    .insert(b.book_id.clone());
            }
            LoanEvents::BookReturned(r) => {
                loans.holder.insert(r.book_id.clone(), None);
                if let Some(books) = loans.held.get_mut(&r.borrower_id) {
                    books.remove(&r.book_id);
                }
            }
        }
    }

    fn decide(&self, loans: &Loans, _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, BorrowError> {
        if let Some(Some(_)) = loans.holder.get(&self.book_id) {
            return Err(BorrowError::BookAlreadyBorrowed(self.book_id.clone()));
        }
        let holding = loans.held.get(&self.borrower_id).map_or(0, BTreeSet::len);
        if holding >= MAX_BOOKS_PER_BORROWER {
            return Err(BorrowError::BorrowerLimitReached(self.borrower_id.clone()));
        }
        Ok(vec![
            BookBorrowed {
                book_id: self.book_id.clone(),
                borrower_id: self.borrower_id.clone(),
            }
            .into(),
        ])
    }
}

/// The request body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BorrowBody {
    /// Who borrows the book.
    #[schemars(regex(pattern = library_events::ID_PATTERN))]
    pub borrower_id: String,
}

/// The path parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BookPath {
    /// The book.
    #[serde(rename = "bookId")]
    #[schemars(regex(pattern = library_events::ID_PATTERN))]
    pub book_id: String,
}
async fn borrow(
    State(rt): State<Runtime>,
    Path(BookPath { book_id }): Path<BookPath>,
    JsonBody(body): JsonBody<BorrowBody>,
) -> Result<Created<Borrowed>, ApiError> {
    let book_id = BookId::parse(&book_id).map_err(|e| ApiError::bad_field("bookId", e))?;
    let borrower_id =
        BorrowerId::parse(&body.borrower_id).map_err(|e| ApiError::bad_field("borrowerId", e))?;
    let cmd = BorrowBook {
        book_id,
        borrower_id,
    };
    let done = rt.execute(&cmd, &()).await?;
    Ok(Created(Borrowed {
        book_id: cmd.book_id.to_string(),
        borrower_id: cmd.borrower_id.to_string(),
        position: done.last(),
    }))
}

/// The answer: the book, its borrower and the position of the loan.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Borrowed {
    /// The book.
    pub book_id: String,
    /// Who borrowed it.
    pub borrower_id: String,
    /// The loan's position.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/books/{bookId}/borrow`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "library-borrow-book")
        .describe("Borrow a book: not while someone has it, at most five books per borrower")
        .post("/api/books/{bookId}/borrow", borrow)
        .command::<BorrowBook>()
        .appends::<BookBorrowed>()
}
