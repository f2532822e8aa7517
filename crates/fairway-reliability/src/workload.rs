//! The requests of the three apps and what a 2xx acknowledges.
//!
//! Each load task is a [`Worker`] with its own seeded generator and the lists and items it has
//! created. Books, borrowers, usernames and emails come from small shared pools, so concurrent
//! tasks contend on them and 409s are expected: a borrowed book, a borrower at the 5-book limit,
//! a taken username or email, a completed item.

use dcb_core::Position;
use serde_json::json;

use crate::client::{Client, ClientError, Reply};

/// Books in the shared pool.
pub const BOOKS: u64 = 30;
/// Borrowers in the shared pool.
pub const BORROWERS: u64 = 12;
/// Usernames (and emails) in the shared pool.
pub const NAMES: u64 = 40;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `POST /api/lists/{list}`.
    CreateList {
        /// The list id.
        list: String,
    },
    /// `POST /api/lists/{list}/items/{item}`.
    AddItem {
        /// The list id.
        list: String,
        /// The item id.
        item: String,
    },
    /// `POST /api/lists/{list}/items/{item}/complete`.
    CompleteItem {
        /// The list id.
        list: String,
        /// The item id.
        item: String,
    },
    /// `GET /api/lists/{list}`.
    GetList {
        /// The list id.
        list: String,
    },
    /// `POST /api/books/{book}/borrow`.
    Borrow {
        /// The book id.
        book: String,
        /// The borrower id.
        borrower: String,
    },
    /// `POST /api/books/{book}/return`.
    Return {
        /// The book id.
        book: String,
        /// The borrower id.
        borrower: String,
    },
    /// `GET /api/borrowers/{borrower}/books`.
    Borrowed {
        /// The borrower id.
        borrower: String,
    },
    /// `POST /api/users`.
    Register {
        /// The user id.
        id: String,
        /// The username.
        username: String,
        /// The email.
        email: String,
    },
}

impl Op {
    /// A short label for statistics.
    pub fn label(&self) -> &'static str {
        match self {
            Op::CreateList { .. } => "create_list",
            Op::AddItem { .. } => "add_item",
            Op::CompleteItem { .. } => "complete_item",
            Op::GetList { .. } => "get_list",
            Op::Borrow { .. } => "borrow",
            Op::Return { .. } => "return",
            Op::Borrowed { .. } => "borrowed",
            Op::Register { .. } => "register",
        }
    }

    /// Whether `status` is an expected answer: 2xx always; 409 for the commands whose rules
    /// contend (borrow, return, register, complete).
    pub fn expected(&self, status: u16) -> bool {
        (200..300).contains(&status)
            || (status == 409
                && matches!(
                    self,
                    Op::Borrow { .. }
                        | Op::Return { .. }
                        | Op::Register { .. }
                        | Op::CompleteItem { .. }
                ))
    }

    /// Whether `reply` is an expected answer: [`Op::expected`] for its status, and also the
    /// documented back-pressure of the password-hash queue for registrations: 503 with the
    /// error code `busy` and a `Retry-After` header (docs/SECURITY.md). Any other 503, a store
    /// failure included, stays unexpected.
    pub fn expected_reply(&self, reply: &crate::client::Reply) -> bool {
        if self.expected(reply.status) {
            return true;
        }
        matches!(self, Op::Register { .. })
            && reply.status == 503
            && reply.json()["error"]["code"] == "busy"
            && reply.headers.iter().any(|(k, _)| k == "retry-after")
    }

    /// The event type a 2xx of this op appended, when it appends one.
    pub fn event_type(&self) -> Option<&'static str> {
        match self {
            Op::CreateList { .. } => Some("ListCreated"),
            Op::AddItem { .. } => Some("ItemAdded"),
            Op::CompleteItem { .. } => Some("ItemCompleted"),
            Op::Borrow { .. } => Some("BookBorrowed"),
            Op::Return { .. } => Some("BookReturned"),
            Op::Register { .. } => Some("UserRegistered"),
            Op::GetList { .. } | Op::Borrowed { .. } => None,
        }
    }

    /// Sends the request.
    pub async fn send(&self, client: &Client) -> Result<Reply, ClientError> {
        match self {
            Op::CreateList { list } => {
                client
                    .json(
                        "POST",
                        &format!("/api/lists/{list}"),
                        &json!({"name": format!("List {list}")}),
                    )
                    .await
            }
            Op::AddItem { list, item } => {
                client
                    .json(
                        "POST",
                        &format!("/api/lists/{list}/items/{item}"),
                        &json!({"text": format!("do {item}")}),
                    )
                    .await
            }
            Op::CompleteItem { list, item } => {
                client
                    .send(
                        "POST",
                        &format!("/api/lists/{list}/items/{item}/complete"),
                        &[],
                        None,
                    )
                    .await
            }
            Op::GetList { list } => client.get(&format!("/api/lists/{list}")).await,
            Op::Borrow { book, borrower } => {
                client
                    .json(
                        "POST",
                        &format!("/api/books/{book}/borrow"),
                        &json!({"borrowerId": borrower}),
                    )
                    .await
            }
            Op::Return { book, borrower } => {
                client
                    .json(
                        "POST",
                        &format!("/api/books/{book}/return"),
                        &json!({"borrowerId": borrower}),
                    )
                    .await
            }
            Op::Borrowed { borrower } => {
                client
                    .get(&format!("/api/borrowers/{borrower}/books"))
                    .await
            }
            Op::Register {
                id,
                username,
                email,
            } => {
                client
                    .json(
                        "POST",
                        "/api/users",
                        &json!({"id": id, "username": username, "email": email,
                                "password": "correct horse battery"}),
                    )
                    .await
            }
        }
    }
}

/// A write the server acknowledged with a 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The request.
    pub op: Op,
    /// The position the response named (body `position` or header `fairway-position`).
    pub position: Option<Position>,
}

/// The position a command's 2xx names.
pub fn position_of(reply: &Reply) -> Option<Position> {
    if let Some(p) = reply.header("fairway-position") {
        return p.parse().ok();
    }
    match &reply.json()["position"] {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64().map(Position::from_u64),
        _ => None,
    }
}

/// Relative weights of the ops (register is expensive: argon2).
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Reads of lists and borrowed books.
    pub reads: u64,
    /// Todo writes.
    pub todo: u64,
    /// Library writes.
    pub library: u64,
    /// Registrations.
    pub register: u64,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            reads: 25,
            todo: 40,
            library: 30,
            register: 5,
        }
    }
}

/// One load task: its generator and what it created.
#[derive(Debug)]
pub struct Worker {
    prefix: String,
    rng: u64,
    counter: u64,
    mix: Mix,
    lists: Vec<(String, Vec<(String, bool)>)>,
}

impl Worker {
    /// Task `index` of run `run` (ids are unique per run and task).
    pub fn new(run: &str, index: usize, seed: u64, mix: Mix) -> Worker {
        Worker {
            prefix: format!("{run}-{index}"),
            rng: seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491,
            counter: 0,
            mix,
            lists: Vec::new(),
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn fresh(&mut self) -> String {
        self.counter += 1;
        format!("{}-{}", self.prefix, self.counter)
    }

    /// The next request.
    pub fn next_op(&mut self) -> Op {
        let m = self.mix;
        let total = m.reads + m.todo + m.library + m.register;
        let r = self.below(total);
        if r < m.reads {
            if self.below(2) == 0 && !self.lists.is_empty() {
                let i = self.below(self.lists.len() as u64) as usize;
                return Op::GetList {
                    list: self.lists[i].0.clone(),
                };
            }
            return Op::Borrowed {
                borrower: format!("p{}", self.below(BORROWERS)),
            };
        }
        if r < m.reads + m.todo {
            let open: Vec<(usize, usize)> = self
                .lists
                .iter()
                .enumerate()
                .flat_map(|(l, (_, items))| {
                    items
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, done))| !done)
                        .map(move |(i, _)| (l, i))
                })
                .collect();
            let pick = self.below(10);
            if self.lists.is_empty() || pick < 2 {
                return Op::CreateList { list: self.fresh() };
            }
            if pick < 4 && !open.is_empty() {
                let (l, i) = open[self.below(open.len() as u64) as usize];
                return Op::CompleteItem {
                    list: self.lists[l].0.clone(),
                    item: self.lists[l].1[i].0.clone(),
                };
            }
            let l = self.below(self.lists.len() as u64) as usize;
            return Op::AddItem {
                list: self.lists[l].0.clone(),
                item: self.fresh(),
            };
        }
        if r < m.reads + m.todo + m.library {
            let book = format!("b{}", self.below(BOOKS));
            let borrower = format!("p{}", self.below(BORROWERS));
            return if self.below(2) == 0 {
                Op::Borrow { book, borrower }
            } else {
                Op::Return { book, borrower }
            };
        }
        let n = self.below(NAMES);
        Op::Register {
            id: format!("u{}", self.fresh()),
            username: format!("name{n}"),
            email: format!("e{n}@example.com"),
        }
    }

    /// Notes the answer to `op` (what was created or completed).
    pub fn observe(&mut self, op: &Op, status: u16) {
        if !(200..300).contains(&status) {
            return;
        }
        match op {
            Op::CreateList { list } => self.lists.push((list.clone(), Vec::new())),
            Op::AddItem { list, item } => {
                if let Some((_, items)) = self.lists.iter_mut().find(|(l, _)| l == list) {
                    items.push((item.clone(), false));
                }
            }
            Op::CompleteItem { list, item } => {
                if let Some((_, items)) = self.lists.iter_mut().find(|(l, _)| l == list)
                    && let Some(entry) = items.iter_mut().find(|(i, _)| i == item)
                {
                    entry.1 = true;
                }
            }
            _ => {}
        }
    }

    /// Forgets an item whose completion had an unknown outcome (the server died): completing it
    /// again could be a legitimate 409.
    pub fn mark_done(&mut self, list: &str, item: &str) {
        if let Some((_, items)) = self.lists.iter_mut().find(|(l, _)| l == list)
            && let Some(entry) = items.iter_mut().find(|(i, _)| i == item)
        {
            entry.1 = true;
        }
    }
}
