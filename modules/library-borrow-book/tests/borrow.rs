//! Given/when/then for borrowing a book, and real concurrency on the reference store.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use dcb_core::{EventStore, MemoryStore, Query, ReadOptions};
use fairway_runtime::testing::{given, nothing};
use fairway_runtime::{CommandError, NewEvent, Runtime};
use library_borrow_book::{BorrowBook, BorrowError};
use library_events::{BookBorrowed, BookId, BookReturned, BorrowerId};

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

fn borrow(b: &str, p: &str) -> BorrowBook {
    BorrowBook {
        book_id: book(b),
        borrower_id: who(p),
    }
}

#[test]
fn a_book_never_borrowed_can_be_borrowed() {
    nothing()
        .when(borrow("b1", "ann"))
        .then([borrowed("b1", "ann")]);
}

#[test]
fn a_book_whose_last_event_is_a_borrow_cannot_be_borrowed() {
    given([borrowed("b1", "ann")])
        .when(borrow("b1", "bob"))
        .then_err(BorrowError::BookAlreadyBorrowed(book("b1")));
}

#[test]
fn the_holder_cannot_borrow_the_same_book_twice() {
    given([borrowed("b1", "ann")])
        .when(borrow("b1", "ann"))
        .then_err(BorrowError::BookAlreadyBorrowed(book("b1")));
}

#[test]
fn a_returned_book_can_be_borrowed_again() {
    given([borrowed("b1", "ann"), returned("b1", "ann")])
        .when(borrow("b1", "bob"))
        .then([borrowed("b1", "bob")]);
}

#[test]
fn only_the_last_event_of_the_book_counts() {
    // Borrowed, returned, borrowed again by bob: the last event is a borrow.
    given([
        borrowed("b1", "ann"),
        returned("b1", "ann"),
        borrowed("b1", "bob"),
    ])
    .when(borrow("b1", "cid"))
    .then_err(BorrowError::BookAlreadyBorrowed(book("b1")));
    // Other books' events do not count.
    given([borrowed("b2", "ann"), borrowed("b3", "bob")])
        .when(borrow("b1", "cid"))
        .then([borrowed("b1", "cid")]);
}

#[test]
fn a_borrower_holding_five_books_cannot_borrow_a_sixth() {
    given((1..=5).map(|i| borrowed(&format!("b{i}"), "ann")))
        .when(borrow("b6", "ann"))
        .then_err(BorrowError::BorrowerLimitReached(who("ann")));
}

#[test]
fn a_borrower_holding_four_books_can_borrow_a_fifth() {
    given((1..=4).map(|i| borrowed(&format!("b{i}"), "ann")))
        .when(borrow("b5", "ann"))
        .then([borrowed("b5", "ann")]);
}

#[test]
fn returning_a_book_frees_a_place_under_the_limit() {
    given(
        (1..=5)
            .map(|i| borrowed(&format!("b{i}"), "ann"))
            .chain([returned("b3", "ann")]),
    )
    .when(borrow("b6", "ann"))
    .then([borrowed("b6", "ann")]);
}

#[test]
fn another_borrowers_books_do_not_count_towards_the_limit() {
    given((1..=5).map(|i| borrowed(&format!("b{i}"), "bob")))
        .when(borrow("b6", "ann"))
        .then([borrowed("b6", "ann")]);
}

#[test]
fn the_book_rule_is_checked_before_the_limit() {
    given(
        (1..=5)
            .map(|i| borrowed(&format!("b{i}"), "ann"))
            .chain([borrowed("b6", "bob")]),
    )
    .when(borrow("b6", "ann"))
    .then_err(BorrowError::BookAlreadyBorrowed(book("b6")));
}

async fn stored(store: &MemoryStore, q: Query) -> usize {
    store
        .read(q, ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_concurrent_borrowers_of_one_book_exactly_one_wins() {
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::new(store.clone());
    let n = 24;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let rt = rt.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                rt.execute(&borrow("b1", &format!("p{i}")), &()).await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(done) => {
                assert_eq!(done.positions.len(), 1);
                wins += 1;
            }
            Err(CommandError::Rejected(BorrowError::BookAlreadyBorrowed(b))) => {
                assert_eq!(b, book("b1"))
            }
            Err(e) => panic!("unexpected outcome: {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(stored(&store, Query::All).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_borrows_by_one_borrower_never_exceed_the_limit() {
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::new(store.clone());
    let n = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let rt = rt.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                (i, rt.execute(&borrow(&format!("b{i}"), "ann"), &()).await)
            })
        })
        .collect();
    let mut pending = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (_, Ok(_)) | (_, Err(CommandError::Rejected(BorrowError::BorrowerLimitReached(_)))) => {
            }
            // Every attempt met another borrow of ann's: try again below, one at a time.
            (i, Err(CommandError::Contention { .. })) => pending.push(i),
            (_, Err(e)) => panic!("unexpected outcome: {e:?}"),
        }
    }
    for i in pending {
        match rt.execute(&borrow(&format!("b{i}"), "ann"), &()).await {
            Ok(_) | Err(CommandError::Rejected(BorrowError::BorrowerLimitReached(_))) => {}
            Err(e) => panic!("unexpected outcome: {e:?}"),
        }
    }
    assert_eq!(stored(&store, Query::tagged("borrower:ann")).await, 5);
}
