//! Given/when/then for the borrowed-books view, and read-your-writes with the view worker running.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use std::time::{Duration, SystemTime};

use dcb_core::{EventStore, MemoryStore};
use fairway_runtime::testing::{given, nothing};
use fairway_runtime::{Host, NewEvent, Runtime, shutdown_channel};
use library_borrowed_books::{BorrowedBooks, Holdings, VIEW_NAME};
use library_events::{BookBorrowed, BookId, BookReturned, BorrowerId};
use uuid::Uuid;

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

fn holds(books: &[&str]) -> Option<Holdings> {
    Some(Holdings {
        books: books.iter().map(|b| book(b)).collect(),
    })
}

#[test]
fn a_borrower_with_no_history_holds_nothing() {
    nothing().view(BorrowedBooks, "ann").then(None);
}

#[test]
fn borrowed_books_are_listed_in_borrow_order() {
    given([
        borrowed("b2", "ann"),
        borrowed("b1", "ann"),
        borrowed("b3", "bob"),
    ])
    .view(BorrowedBooks, "ann")
    .then(holds(&["b2", "b1"]));
}

#[test]
fn returned_books_leave_the_list() {
    given([
        borrowed("b1", "ann"),
        borrowed("b2", "ann"),
        returned("b1", "ann"),
    ])
    .view(BorrowedBooks, "ann")
    .then(holds(&["b2"]));
}

#[test]
fn a_borrower_who_returned_everything_holds_nothing() {
    given([borrowed("b1", "ann"), returned("b1", "ann")])
        .view(BorrowedBooks, "ann")
        .then(None);
}

#[test]
fn a_book_passes_from_one_borrower_to_another() {
    let history = [
        borrowed("b1", "ann"),
        returned("b1", "ann"),
        borrowed("b1", "bob"),
    ];
    given(history)
        .view(BorrowedBooks, "bob")
        .then(holds(&["b1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_waiting_for_a_commands_position_sees_its_write() {
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::new(store.clone());
    let host = Host::new(rt.clone(), vec![library_borrowed_books::module()]);
    let (trigger, shutdown) = shutdown_channel();
    let workers = host.spawn_workers(shutdown);

    for (i, (b, p)) in [("b7", "ann"), ("b8", "ann"), ("b7", "ann")]
        .iter()
        .enumerate()
    {
        let e = if i < 2 {
            borrowed(b, p)
        } else {
            returned(b, p)
        };
        let event = e
            .to_event(Uuid::from_u64_pair(7, i as u64), SystemTime::UNIX_EPOCH)
            .unwrap();
        let position = store.append(vec![event], vec![]).await.unwrap().positions[0];
        rt.wait_for_view(VIEW_NAME, position, Duration::from_secs(5))
            .await
            .unwrap();
        let expected = if i == 0 {
            holds(&["b7"])
        } else if i == 1 {
            holds(&["b7", "b8"])
        } else {
            holds(&["b8"])
        };
        assert_eq!(rt.view_get(&BorrowedBooks, "ann").await.unwrap(), expected);
    }

    trigger.trigger();
    for w in workers {
        w.await.unwrap();
    }
}

/// The response is not paged because the domain caps it: at most five books of 64-byte ids.
#[test]
fn the_largest_response_is_bounded_by_the_five_book_rule() {
    let books = (0..library_events::MAX_BOOKS_PER_BORROWER)
        .map(|i| book(&format!("{i}").repeat(library_events::MAX_ID_LEN)))
        .collect();
    let size = serde_json::to_vec(&Holdings { books }).unwrap().len();
    assert_eq!(size, library_borrowed_books::MAX_RESPONSE_BYTES);
}
