//! Given/when/then for returning a book.

#![allow(clippy::unwrap_used)]

use fairway_runtime::NewEvent;
use fairway_runtime::testing::{given, nothing};
use library_events::{BookBorrowed, BookId, BookReturned, BorrowerId};
use library_return_book::{ReturnBook, ReturnError};

fn book(s: &str) -> BookId {
    BookId::parse(s).unwrap()
}

fn who(s: &str) -> BorrowerId {
    BorrowerId::parse(s).unwrap()
}

fn borrowed(b: &str, p: &str) -> NewEvent {
    BookBorrowed {
        book_id: book(b),
        borrower_id: who(p),
    }
    .into()
}

fn returned(b: &str, p: &str) -> NewEvent {
    BookReturned {
        book_id: book(b),
        borrower_id: who(p),
    }
    .into()
}

fn give_back(b: &str, p: &str) -> ReturnBook {
    ReturnBook {
        book_id: book(b),
        borrower_id: who(p),
    }
}

fn not_borrowed(b: &str, p: &str) -> ReturnError {
    ReturnError::NotBorrowed {
        book: book(b),
        borrower: who(p),
    }
}

#[test]
fn the_borrower_returns_the_book() {
    given([borrowed("b1", "ann")])
        .when(give_back("b1", "ann"))
        .then([returned("b1", "ann")]);
}

#[test]
fn a_book_never_borrowed_cannot_be_returned() {
    nothing()
        .when(give_back("b1", "ann"))
        .then_err(not_borrowed("b1", "ann"));
}

#[test]
fn only_the_current_borrower_can_return_it() {
    given([borrowed("b1", "ann")])
        .when(give_back("b1", "bob"))
        .then_err(not_borrowed("b1", "bob"));
}

#[test]
fn a_returned_book_cannot_be_returned_twice() {
    given([borrowed("b1", "ann"), returned("b1", "ann")])
        .when(give_back("b1", "ann"))
        .then_err(not_borrowed("b1", "ann"));
}

#[test]
fn an_earlier_borrower_cannot_return_a_book_someone_else_now_holds() {
    given([
        borrowed("b1", "ann"),
        returned("b1", "ann"),
        borrowed("b1", "bob"),
    ])
    .when(give_back("b1", "ann"))
    .then_err(not_borrowed("b1", "ann"));
}

#[test]
fn other_books_do_not_matter() {
    given([borrowed("b2", "ann")])
        .when(give_back("b1", "ann"))
        .then_err(not_borrowed("b1", "ann"));
}
