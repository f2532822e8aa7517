//! Pattern: **command**. Slice: library — return a book.
//!
//! `POST /api/books/{bookId}/return` with `{"borrowerId"}` appends `BookReturned` and answers 204
//! with the appended position in the `fairway-position` header (hand it to
//! `GET /api/borrowers/{borrowerId}/books?after=<position>` for read-your-writes). The book's
//! last event (read backwards with a limit of one) must be a borrow by that borrower: otherwise
//! 409 `book_not_borrowed`.
//!
//! Given/when/then:
//!
//! ```
//! use library_events::{BookBorrowed, BookId, BookReturned, BorrowerId};
//! use library_return_book::ReturnBook;
//! use fairway_runtime::testing::given;
//! let (b1, ann) = (BookId::parse("b1")?, BorrowerId::parse("ann")?);
//! // Given ann borrowed b1, when ann returns b1, then b1 is returned.
//! given([BookBorrowed { book_id: b1.clone(), borrower_id: ann.clone() }])
//!     .when(ReturnBook { book_id: b1.clone(), borrower_id: ann.clone() })
//!     .then([BookReturned { book_id: b1, borrower_id: ann }]);
//! # Ok::<(), library_events::IdError>(())
//! ```

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dcb_core::Query;
use fairway_runtime::http::{ApiError, JsonBody};
use fairway_runtime::openapi::{self, GenContext, Operation, OperationOutput};
use fairway_runtime::{
    Command, Ctx, DomainError, Module, ModuleKind, NewEvent, Runtime, Sequenced,
};
use library_events::{BookId, BookReturned, BorrowerId, LoanEvents, book_tag};
use schemars::JsonSchema;
use serde::Deserialize;

/// The response header holding the appended position.
pub const POSITION_HEADER: &str = "fairway-position";

/// `borrower_id` returns `book_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnBook {
    /// The book.
    pub book_id: BookId,
    /// Who returns it.
    pub borrower_id: BorrowerId,
}

/// Why a return is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    /// The book is not currently borrowed by this borrower.
    #[error("book {book} is not borrowed by {borrower}")]
    NotBorrowed {
        /// The book.
        book: BookId,
        /// The would-be returner.
        borrower: BorrowerId,
    },
}

impl DomainError for ReturnError {
    fn code(&self) -> &'static str {
        "book_not_borrowed"
    }
}

/// Who holds the book according to its last event (`None`: nobody, or never borrowed).
#[derive(Debug, Default)]
pub struct Holder(Option<BorrowerId>);

impl Command for ReturnBook {
    type Events = LoanEvents;
    type State = Holder;
    type Error = ReturnError;
    type Deps = ();

    fn query(&self) -> Query {
        Query::tagged(book_tag(&self.book_id))
    }

    /// Only the book's last event matters.
    fn last(&self) -> Option<u64> {
        Some(1)
    }

    fn evolve(holder: &mut Holder, e: &Sequenced<LoanEvents>) {
        holder.0 = match &e.event {
            LoanEvents::BookBorrowed(b) => Some(b.borrower_id.clone()),
            LoanEvents::BookReturned(_) => None,
        };
    }

    fn decide(&self, holder: &Holder, _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, ReturnError> {
        if holder.0.as_ref() != Some(&self.borrower_id) {
            return Err(ReturnError::NotBorrowed {
                book: self.book_id.clone(),
                borrower: self.borrower_id.clone(),
            });
        }
        Ok(vec![
            BookReturned {
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
pub struct ReturnBody {
    /// Who returns the book.
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
async fn return_book(
    State(rt): State<Runtime>,
    Path(BookPath { book_id }): Path<BookPath>,
    JsonBody(body): JsonBody<ReturnBody>,
) -> Result<Returned, ApiError> {
    let book_id = BookId::parse(&book_id).map_err(|e| ApiError::bad_field("bookId", e))?;
    let borrower_id =
        BorrowerId::parse(&body.borrower_id).map_err(|e| ApiError::bad_field("borrowerId", e))?;
    let done = rt
        .execute(
            &ReturnBook {
                book_id,
                borrower_id,
            },
            &(),
        )
        .await?;
    Ok(Returned(done.last()))
}

/// The answer: 204, with the return's position in [`POSITION_HEADER`].
#[derive(Debug, Clone, Copy)]
pub struct Returned(pub Option<dcb_core::Position>);

impl IntoResponse for Returned {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(p) = self.0
            && let Ok(v) = HeaderValue::from_str(&p.to_string())
        {
            headers.insert(POSITION_HEADER, v);
        }
        (StatusCode::NO_CONTENT, headers).into_response()
    }
}

impl OperationOutput for Returned {
    type Inner = ();

    fn inferred_responses(
        ctx: &mut GenContext,
        _: &mut Operation,
    ) -> Vec<(Option<u16>, openapi::aide::openapi::Response)> {
        use openapi::aide::openapi::{Header, HeaderStyle, ParameterSchemaOrContent, ReferenceOr};
        let mut response = openapi::aide::openapi::Response {
            description: "Returned".to_owned(),
            ..Default::default()
        };
        response.headers.insert(
            POSITION_HEADER.to_owned(),
            ReferenceOr::Item(Header {
                description: Some("The return's position (wait for views with `?after=`)".into()),
                style: HeaderStyle::Simple,
                required: false,
                deprecated: None,
                format: ParameterSchemaOrContent::Schema(openapi::aide::openapi::SchemaObject {
                    json_schema: openapi::position(&mut ctx.schema),
                    example: None,
                    external_docs: None,
                }),
                example: None,
                examples: Default::default(),
                extensions: Default::default(),
            }),
        );
        vec![(Some(204), response)]
    }
}

/// The module: `POST /api/books/{bookId}/return`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "library-return-book")
        .describe("Return a book: only its current borrower can")
        .post("/api/books/{bookId}/return", return_book)
        .command::<ReturnBook>()
        .appends::<BookReturned>()
}
