//! The library app through the real `fairway` binary over HTTP: borrowing and returning books,
//! the five-book limit, the borrowed-books view with read-your-writes, input validation with the
//! JSON error shape, concurrent borrowers of one book (exactly one wins), concurrent borrows by
//! one borrower near the limit, and a restart that keeps every loan.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::{Arc, Barrier};

use serde_json::{Value, json};
use support::{Response, Server, data_dir, fairway};

/// `POST /api/books/{book}/borrow` for `borrower`.
fn borrow(s: &Server, book: &str, borrower: &str) -> Response {
    s.post_json(
        &format!("/api/books/{book}/borrow"),
        &json!({ "borrowerId": borrower }),
    )
}

/// `POST /api/books/{book}/return` for `borrower`.
fn give_back(s: &Server, book: &str, borrower: &str) -> Response {
    s.post_json(
        &format!("/api/books/{book}/return"),
        &json!({ "borrowerId": borrower }),
    )
}

/// Borrows and asserts 201 with the documented body; returns the position (decimal string).
#[track_caller]
fn borrowed(s: &Server, book: &str, borrower: &str) -> String {
    let r = borrow(s, book, borrower);
    assert_eq!(r.status, 201, "{}", r.text());
    let body = r.json();
    assert_eq!(body["bookId"], book, "{body}");
    assert_eq!(body["borrowerId"], borrower, "{body}");
    let position = body["position"]
        .as_str()
        .unwrap_or_else(|| panic!("position is not a string: {body}"))
        .to_owned();
    assert!(position.parse::<u128>().is_ok(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    position
}

/// Returns and asserts 204 with an empty body; returns the `fairway-position` header.
#[track_caller]
fn returned(s: &Server, book: &str, borrower: &str) -> String {
    let r = give_back(s, book, borrower);
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty(), "{}", r.text());
    let position = r
        .header("fairway-position")
        .unwrap_or_else(|| panic!("no fairway-position header: {:?}", r.headers))
        .to_owned();
    assert!(position.parse::<u128>().is_ok(), "{position}");
    position
}

/// The books `borrower` holds, read after the view reached `after` (when given).
#[track_caller]
fn books(s: &Server, borrower: &str, after: Option<&str>) -> Vec<String> {
    let path = match after {
        Some(p) => format!("/api/borrowers/{borrower}/books?after={p}"),
        None => format!("/api/borrowers/{borrower}/books"),
    };
    let r = s.get(&path);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    body["books"]
        .as_array()
        .unwrap_or_else(|| panic!("no books array: {body}"))
        .iter()
        .map(|b| b.as_str().unwrap().to_owned())
        .collect()
}

/// The stored events of `kind`, through the operator command (server stopped).
fn events_of(dir: &std::path::Path, kind: &str) -> Vec<Value> {
    let out = fairway(dir, &["events", "--type", kind]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn borrowing_and_returning_books() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    for module in [
        "library-borrow-book",
        "library-return-book",
        "library-borrowed-books",
    ] {
        assert!(s.startup_line.contains(module), "{}", s.startup_line);
    }

    let p1 = borrowed(&s, "b1", "ann");
    assert_eq!(books(&s, "ann", Some(&p1)), ["b1"]);
    // The book's last event is a borrow: nobody may borrow it, not even its holder.
    borrow(&s, "b1", "bob").assert_error(409, "book_already_borrowed");
    borrow(&s, "b1", "ann").assert_error(409, "book_already_borrowed");
    // Only the holder may return it; a book never borrowed cannot be returned.
    give_back(&s, "b1", "bob").assert_error(409, "book_not_borrowed");
    give_back(&s, "never-borrowed", "ann").assert_error(409, "book_not_borrowed");

    let p2 = returned(&s, "b1", "ann");
    assert!(p2.parse::<u128>().unwrap() > p1.parse::<u128>().unwrap());
    assert_eq!(books(&s, "ann", Some(&p2)), Vec::<String>::new());
    // Returned twice: its last event is a return now.
    give_back(&s, "b1", "ann").assert_error(409, "book_not_borrowed");

    // Its last event is a return: it can be borrowed again, by someone else.
    let p3 = borrowed(&s, "b1", "bob");
    assert_eq!(books(&s, "bob", Some(&p3)), ["b1"]);
    assert_eq!(books(&s, "ann", Some(&p3)), Vec::<String>::new());
    give_back(&s, "b1", "ann").assert_error(409, "book_not_borrowed");
    // A borrower nobody has heard of holds nothing.
    assert_eq!(books(&s, "nobody", None), Vec::<String>::new());
    s.stop();

    // Exactly the successful commands were stored: the rejections wrote nothing.
    let borrows = events_of(dir.path(), "BookBorrowed");
    assert_eq!(borrows.len(), 2, "{borrows:?}");
    assert_eq!(
        borrows[0]["data"],
        json!({"bookId": "b1", "borrowerId": "ann"})
    );
    assert_eq!(
        borrows[1]["data"],
        json!({"bookId": "b1", "borrowerId": "bob"})
    );
    assert_eq!(borrows[0]["position"], p1);
    assert_eq!(borrows[1]["position"], p3);
    let returns = events_of(dir.path(), "BookReturned");
    assert_eq!(returns.len(), 1, "{returns:?}");
    assert_eq!(returns[0]["position"], p2);
}

#[test]
fn a_borrower_holds_at_most_five_books() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut last = String::new();
    for book in ["c1", "c2", "c3", "c4", "c5"] {
        last = borrowed(&s, book, "carol");
    }
    assert_eq!(
        books(&s, "carol", Some(&last)),
        ["c1", "c2", "c3", "c4", "c5"]
    );
    borrow(&s, "c6", "carol").assert_error(409, "borrower_limit_reached");
    // The refused borrow took nothing: c6 is still free for someone else.
    let p = borrowed(&s, "c6", "dave");
    assert_eq!(books(&s, "dave", Some(&p)), ["c6"]);
    // A book already borrowed is refused as such, whatever the borrower holds.
    borrow(&s, "c6", "carol").assert_error(409, "book_already_borrowed");

    // Returning one makes room for exactly one more.
    returned(&s, "c3", "carol");
    let p = borrowed(&s, "c7", "carol");
    assert_eq!(books(&s, "carol", Some(&p)), ["c1", "c2", "c4", "c5", "c7"]);
    borrow(&s, "c8", "carol").assert_error(409, "borrower_limit_reached");
    // The returned book went back on the shelf.
    let p = borrowed(&s, "c3", "dave");
    assert_eq!(books(&s, "dave", Some(&p)), ["c6", "c3"]);
    s.stop();
}

#[test]
fn bad_input_is_400_naming_the_field_and_writes_nothing() {
    let dir = data_dir();
    let s = Server::start(dir.path());

    #[track_caller]
    fn names(r: &Response, status: u16, code: &str, field: &str) {
        r.assert_error(status, code);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(field), "{field} not named in {message:?}");
    }

    for action in ["borrow", "return"] {
        let path = format!("/api/books/b1/{action}");
        names(
            &s.post_json(&path, &json!({})),
            400,
            "missing_field",
            "borrowerId",
        );
        // snake_case is not the documented field name.
        names(
            &s.post_json(&path, &json!({"borrower_id": "ann"})),
            400,
            "missing_field",
            "borrowerId",
        );
        names(
            &s.post_json(&path, &json!({"borrowerId": 7})),
            400,
            "invalid_field",
            "borrowerId",
        );
        for bad in ["", "a b", "a:b", &"x".repeat(65)] {
            let r = s.post_json(&path, &json!({ "borrowerId": bad }));
            names(&r, 400, "invalid_field", "borrowerId");
        }
        for bad_book in ["bad%20id", "a:b", &"x".repeat(65)] {
            let r = s.post_json(
                &format!("/api/books/{bad_book}/{action}"),
                &json!({"borrowerId": "ann"}),
            );
            names(&r, 400, "invalid_field", "bookId");
        }
        s.request(
            "POST",
            &path,
            &[("content-type", "application/json")],
            Some(b"{\"borrowerId\":"),
        )
        .assert_error(400, "malformed_json");
        s.request("POST", &path, &[], Some(b"{\"borrowerId\":\"ann\"}"))
            .assert_error(415, "unsupported_media_type");
        s.request("GET", &path, &[], None)
            .assert_error(405, "method_not_allowed");
    }
    // The longest valid ids are accepted (the limit is 64 bytes).
    let long = "y".repeat(64);
    let p = borrowed(&s, &long, &long);
    assert_eq!(books(&s, &long, Some(&p)), vec![long]);

    names(
        &s.get("/api/borrowers/bad%20id/books"),
        400,
        "invalid_field",
        "borrowerId",
    );
    s.get(&format!("/api/borrowers/{}/books", "x".repeat(65)))
        .assert_error(400, "invalid_field");
    // `after` must be a position (96 bits at most).
    for bad in ["abc", "-1", "1.5", "", "79228162514264337593543950336"] {
        let r = s.get(&format!("/api/borrowers/ann/books?after={bad}"));
        names(&r, 400, "bad_request", "after");
    }
    // A position past the store's head (no command returned it): 400 naming `after`, at once
    // (it used to wait five seconds, then answer 503).
    let r = s.get(&format!("/api/borrowers/ann/books?after={}", u64::MAX));
    names(&r, 400, "invalid_field", "after");
    s.stop();
    // Only the one valid borrow was stored.
    assert_eq!(events_of(dir.path(), "BookBorrowed").len(), 1);
    assert_eq!(events_of(dir.path(), "BookReturned").len(), 0);
}

/// Sends `n` requests at once (threads released together by a barrier) and returns the
/// responses in thread order.
fn at_once<F>(s: &Arc<Server>, n: usize, call: F) -> Vec<Response>
where
    F: Fn(&Server, usize) -> Response + Send + Sync + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let call = Arc::new(call);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (s, barrier, call) = (Arc::clone(s), Arc::clone(&barrier), Arc::clone(&call));
            std::thread::spawn(move || {
                barrier.wait();
                call(&s, i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn of_sixteen_concurrent_borrowers_of_one_book_exactly_one_wins() {
    const N: usize = 16;
    const ROUNDS: usize = 3;
    let dir = data_dir();
    let s = Arc::new(Server::start(dir.path()));
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let hot = format!("hot-{round}");
        let book = hot.clone();
        let responses = at_once(&s, N, move |s, i| borrow(s, &book, &format!("r{i}")));
        let won: Vec<usize> = (0..N).filter(|&i| responses[i].status == 201).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: {:?}",
            responses
                .iter()
                .map(|r| (r.status, r.text()))
                .collect::<Vec<_>>()
        );
        for (i, r) in responses.iter().enumerate() {
            if i != won[0] {
                r.assert_error(409, "book_already_borrowed");
            }
        }
        let winner = format!("r{}", won[0]);
        let body = responses[won[0]].json();
        assert_eq!(body["bookId"], hot);
        assert_eq!(body["borrowerId"], winner.as_str());
        let position = body["position"].as_str().unwrap().to_owned();
        assert!(books(&s, &winner, Some(&position)).contains(&hot));
        winners.push(winner);
    }
    // Every loser holds only what they won in another round.
    for i in 0..N {
        let who = format!("r{i}");
        let held = books(&s, &who, None);
        let expected: Vec<String> = (0..ROUNDS)
            .filter(|&r| winners[r] == who)
            .map(|r| format!("hot-{r}"))
            .collect();
        assert_eq!(held, expected, "{who}");
    }
    // Its holder returns it from eight connections at once: one return is recorded.
    let holder = winners[0].clone();
    let responses = at_once(&s, 8, move |s, _| give_back(s, "hot-0", &holder));
    let ok: Vec<&Response> = responses.iter().filter(|r| r.status == 204).collect();
    assert_eq!(
        ok.len(),
        1,
        "{:?}",
        responses.iter().map(Response::text).collect::<Vec<_>>()
    );
    for r in responses.iter().filter(|r| r.status != 204) {
        r.assert_error(409, "book_not_borrowed");
    }
    let position = ok[0].header("fairway-position").unwrap();
    let held = books(&s, &winners[0], Some(position));
    assert!(!held.contains(&"hot-0".to_owned()), "{held:?}");
    // The race really happened: losers read the book free, then their append was refused and
    // their re-run saw the borrow.
    let metrics = s.get("/metrics").text();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fairway_store_condition_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        failures >= 1.0,
        "no append condition ever failed:\n{metrics}"
    );
    Arc::into_inner(s).unwrap().stop();
    let borrows = events_of(dir.path(), "BookBorrowed");
    assert_eq!(borrows.len(), ROUNDS, "{borrows:?}");
    for (round, e) in borrows.iter().enumerate() {
        assert_eq!(e["data"]["bookId"], format!("hot-{round}"));
        assert_eq!(e["data"]["borrowerId"], winners[round].as_str());
    }
    assert_eq!(events_of(dir.path(), "BookReturned").len(), 1);
}

#[test]
fn concurrent_borrows_by_one_borrower_never_exceed_five_books() {
    const N: usize = 6;
    let dir = data_dir();
    let s = Arc::new(Server::start(dir.path()));
    for book in ["d1", "d2", "d3"] {
        borrowed(&s, book, "dora");
    }
    // Holding three, dora asks for six different free books at once: two fit.
    let responses = at_once(&s, N, |s, i| borrow(s, &format!("e{i}"), "dora"));
    let won: Vec<usize> = (0..N).filter(|&i| responses[i].status == 201).collect();
    assert_eq!(
        won.len(),
        2,
        "{:?}",
        responses
            .iter()
            .map(|r| (r.status, r.text()))
            .collect::<Vec<_>>()
    );
    for (i, r) in responses.iter().enumerate() {
        if !won.contains(&i) {
            r.assert_error(409, "borrower_limit_reached");
        }
    }
    let last = won
        .iter()
        .map(|&i| responses[i].json()["position"].as_str().unwrap().to_owned())
        .max_by_key(|p| p.parse::<u128>().unwrap())
        .unwrap();
    let held = books(&s, "dora", Some(&last));
    assert_eq!(held.len(), 5, "{held:?}");
    assert_eq!(held[..3], ["d1", "d2", "d3"]);
    for &i in &won {
        assert!(held.contains(&format!("e{i}")), "{held:?}");
    }
    // The books she was refused are still free.
    for i in (0..N).filter(|i| !won.contains(i)) {
        borrowed(&s, &format!("e{i}"), "eve");
    }
    Arc::into_inner(s).unwrap().stop();
}

#[test]
fn a_restart_keeps_every_loan_and_the_rules() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    borrowed(&s, "f1", "fay");
    borrowed(&s, "f2", "fay");
    let p = borrowed(&s, "g1", "gus");
    returned(&s, "f1", "fay");
    let last = borrowed(&s, "f3", "fay");
    assert_eq!(books(&s, "fay", Some(&last)), ["f2", "f3"]);
    assert_eq!(books(&s, "gus", Some(&p)), ["g1"]);
    // The head is an event of another context now, which the view does not read: waiting for
    // its position must not wait out the timeout.
    let r = s.post_json(
        "/api/users",
        &json!({"id": "fay", "username": "fay", "email": "fay@example.com",
                "password": "correct horse battery staple"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let foreign = r.json()["position"].as_str().unwrap().to_owned();
    // (Had it waited out the timeout, the answer would be 503 `view_not_ready`, not the list.)
    assert_eq!(books(&s, "fay", Some(&foreign)), ["f2", "f3"]);

    let s = s.restart();
    // The view answers from its persisted state at once, without waiting.
    assert_eq!(books(&s, "fay", None), ["f2", "f3"]);
    assert_eq!(books(&s, "gus", None), ["g1"]);
    // ...and positions from before the restart are already reached, its own and others'.
    assert_eq!(books(&s, "fay", Some(&last)), ["f2", "f3"]);
    assert_eq!(books(&s, "fay", Some(&foreign)), ["f2", "f3"]);
    // The commands see the history from before the restart.
    borrow(&s, "f2", "gus").assert_error(409, "book_already_borrowed");
    give_back(&s, "f1", "fay").assert_error(409, "book_not_borrowed");
    let p = borrowed(&s, "f1", "gus");
    assert!(p.parse::<u128>().unwrap() > last.parse::<u128>().unwrap());
    assert_eq!(books(&s, "gus", Some(&p)), ["g1", "f1"]);
    let p = returned(&s, "f2", "fay");
    assert_eq!(books(&s, "fay", Some(&p)), ["f3"]);
    s.stop();
}
