//! `library-events`: the events of the library context — a book is borrowed, a book is returned —
//! with their tags and the validated id newtypes, shared by every `library-*` module.
//!
//! Layer: a context's shared events crate, above `fairway-runtime`. It must not depend on any
//! module, on a backend, or on anything of another context. It is the only code the library
//! modules share.
//!
//! Tags: every event carries `book:<bookId>` and `borrower:<borrowerId>`, so "the book's last
//! event" and "what a borrower holds" are each one tag query.

use std::fmt;

use fairway_runtime::{DomainEvent, tag};
use serde::{Deserialize, Serialize};

/// The most books one borrower may hold at a time.
pub const MAX_BOOKS_PER_BORROWER: usize = 5;

/// The longest id accepted for a book or a borrower (in bytes).
pub const MAX_ID_LEN: usize = 64;

/// The ids' rule as a regular expression, for the API contract: 1 to [`MAX_ID_LEN`] bytes of
/// letters, digits, `-`, `_` and `.` (what `parse` accepts).
pub const ID_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

/// Why an id is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("must not be empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("must be at most {MAX_ID_LEN} bytes")]
    TooLong,
    /// The id holds a character outside `A-Z a-z 0-9 - _ .`.
    #[error("may only contain letters, digits, '-', '_' and '.'")]
    BadCharacter,
}

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A validated id (non-empty, at most [`MAX_ID_LEN`] bytes, `A-Z a-z 0-9 - _ .`).
            pub fn parse(s: &str) -> Result<$name, IdError> {
                check_id(s)?;
                Ok($name(s.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type! {
    /// A book's id.
    BookId
}

id_type! {
    /// A borrower's id.
    BorrowerId
}

/// The tag of every event about a book: `book:<id>`.
pub fn book_tag(book: &BookId) -> String {
    tag("book", book)
}

/// The tag of every event about a borrower: `borrower:<id>`.
pub fn borrower_tag(borrower: &BorrowerId) -> String {
    tag("borrower", borrower)
}

/// A borrower took a book home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookBorrowed {
    /// The book.
    pub book_id: BookId,
    /// Who borrowed it.
    pub borrower_id: BorrowerId,
}

impl DomainEvent for BookBorrowed {
    const TYPE: &'static str = "BookBorrowed";
    fn tags(&self) -> Vec<String> {
        vec![book_tag(&self.book_id), borrower_tag(&self.borrower_id)]
    }
}

/// A borrower brought a book back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookReturned {
    /// The book.
    pub book_id: BookId,
    /// Who returned it.
    pub borrower_id: BorrowerId,
}

impl DomainEvent for BookReturned {
    const TYPE: &'static str = "BookReturned";
    fn tags(&self) -> Vec<String> {
        vec![book_tag(&self.book_id), borrower_tag(&self.borrower_id)]
    }
}

fairway_runtime::event_set! {
    /// Every event of the library context.
    pub enum LoanEvents {
        BookBorrowed(BookBorrowed),
        BookReturned(BookReturned),
    }
}

#[cfg(test)]
mod id_pattern_tests {
    use super::*;

    #[test]
    fn the_id_pattern_states_the_length_limit() {
        assert!(ID_PATTERN.ends_with(&format!("{{1,{MAX_ID_LEN}}}$")));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert_eq!(BookId::parse("b-1.x_2").unwrap().as_str(), "b-1.x_2");
        assert_eq!(BookId::parse(""), Err(IdError::Empty));
        assert_eq!(BorrowerId::parse("a b"), Err(IdError::BadCharacter));
        assert_eq!(BorrowerId::parse("a:b"), Err(IdError::BadCharacter));
        assert_eq!(
            BorrowerId::parse(&"x".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong)
        );
        assert!(BorrowerId::parse(&"x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn events_carry_book_and_borrower_tags_and_camel_case_data() {
        let e = BookBorrowed {
            book_id: BookId::parse("b1").unwrap(),
            borrower_id: BorrowerId::parse("ann").unwrap(),
        };
        assert_eq!(e.tags(), vec!["book:b1", "borrower:ann"]);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"bookId": "b1", "borrowerId": "ann"})
        );
    }
}
