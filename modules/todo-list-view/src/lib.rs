//! Materialized view `todo-lists` — slice "show a todo list" of the todo context.
//!
//! `GET /api/lists/{listId}` → 200 `{"id","name","items":[{"id","text","done"}],"itemsCount"}`;
//! an unknown list → 404 `list_not_found`; a bad id → 400 naming `listId`. The read model holds
//! one entry per list and one per item (so a long list never outgrows a stored value), kept
//! current in the background and resumed from its checkpoint after a restart. A request first waits (up to 5 s, else 503) until the view has caught up with the
//! store's head, or with `?after={position}` when given, so a client reads its own writes.
//!
//! Given `ListCreated { list_id: "groceries", name: "Groceries" }`, `ItemAdded { item_id:
//! "milk", text: "Buy milk" }` and `ItemCompleted { item_id: "milk" }`, when the view is read
//! at `groceries`, then `{ name: "Groceries", items: [{ id: "milk", text: "Buy milk", done:
//! true }] }`.
//!
//! Layer: a business module. Depends on `fairway-runtime`, `dcb-core` and `todo-events` only.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query as UrlQuery, State};
use dcb_core::Position;
use fairway_runtime::http::ApiError;
use fairway_runtime::{MaterializedView, Module, ModuleKind, Runtime, Sequenced};
use serde::{Deserialize, Serialize};
use todo_events::{ItemAdded, ItemCompleted, ListCreated, ListId};

/// The view's name (its storage is consumer `view:todo-lists`).
pub const VIEW_NAME: &str = "todo-lists";

/// How long a request waits for the view to catch up.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

fairway_runtime::event_set! {
    /// Everything a list shows.
    pub enum TodoEvents {
        ListCreated(ListCreated),
        ItemAdded(ItemAdded),
        ItemCompleted(ItemCompleted),
    }
}

/// One item of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The item id.
    pub id: String,
    /// What is to be done.
    pub text: String,
    /// Completed or not.
    pub done: bool,
}

/// One list, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoList {
    /// The list id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its items, in the order they were added.
    pub items: Vec<Item>,
}

/// One entry of the read model. A list is stored as one `List` entry (key `list/{listId}`) plus
/// one `Item` entry per item (key `item/{listId}/{itemId}`), so no stored value grows with the
/// number of items: a list of any length stays within the store's value limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A list's own fields.
    List {
        /// The list id.
        id: String,
        /// Its name.
        name: String,
    },
    /// One item of a list.
    Item {
        /// The item.
        item: Item,
        /// Where it was added (orders the items).
        added_at: Position,
    },
}

/// The key of a list's own entry.
pub fn list_key(list: &str) -> String {
    format!("list/{list}")
}

/// The key prefix of a list's items (ids never contain `/`).
pub fn items_prefix(list: &str) -> String {
    format!("item/{list}/")
}

/// The materialized view.
#[derive(Debug, Clone, Copy, Default)]
pub struct TodoLists;

impl MaterializedView for TodoLists {
    type Events = TodoEvents;
    type State = Entry;

    fn name(&self) -> &str {
        VIEW_NAME
    }

    fn keys(&self, e: &Sequenced<TodoEvents>) -> Vec<String> {
        match &e.event {
            TodoEvents::ListCreated(c) => vec![list_key(c.list_id.as_str())],
            TodoEvents::ItemAdded(a) => {
                vec![format!("{}{}", items_prefix(a.list_id.as_str()), a.item_id)]
            }
            TodoEvents::ItemCompleted(c) => {
                vec![format!("{}{}", items_prefix(c.list_id.as_str()), c.item_id)]
            }
        }
    }

    fn evolve(&self, _key: &str, state: &mut Option<Entry>, e: &Sequenced<TodoEvents>) {
        match (&e.event, state.as_mut()) {
            (TodoEvents::ListCreated(c), None) => {
                *state = Some(Entry::List {
                    id: c.list_id.to_string(),
                    name: c.name.clone(),
                });
            }
            (TodoEvents::ItemAdded(a), None) => {
                *state = Some(Entry::Item {
                    item: Item {
                        id: a.item_id.to_string(),
                        text: a.text.clone(),
                        done: false,
                    },
                    added_at: e.position,
                });
            }
            (TodoEvents::ItemCompleted(_), Some(Entry::Item { item, .. })) => item.done = true,
            // A second creation of one list or of one item, or a completion of an unknown
            // item: the commands never append these, so there is nothing to show.
            _ => {}
        }
    }
}

/// Items read per page when assembling a list.
const ITEMS_PAGE: usize = 500;

/// Reads list `list` from the view: its entry and all its items, in the order they were added.
pub async fn read_list(rt: &Runtime, list: &str) -> Result<Option<TodoList>, ApiError> {
    let Some(Entry::List { id, name }) = rt.view_get(&TodoLists, &list_key(list)).await? else {
        return Ok(None);
    };
    let prefix = items_prefix(list);
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = rt
            .view_scan(&TodoLists, &prefix, after.as_deref(), ITEMS_PAGE)
            .await?;
        let n = page.len();
        after = page.last().map(|(k, _)| k.clone());
        items.extend(page.into_iter().filter_map(|(_, e)| match e {
            Entry::Item { item, added_at } => Some((added_at, item)),
            Entry::List { .. } => None,
        }));
        if n < ITEMS_PAGE {
            break;
        }
    }
    items.sort_by_key(|(at, _)| *at);
    Ok(Some(TodoList {
        id,
        name,
        items: items.into_iter().map(|(_, i)| i).collect(),
    }))
}

/// The response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    /// The list id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its items.
    pub items: Vec<Item>,
    /// How many items it has.
    pub items_count: usize,
}

impl From<TodoList> for ListResponse {
    fn from(l: TodoList) -> ListResponse {
        ListResponse {
            items_count: l.items.len(),
            id: l.id,
            name: l.name,
            items: l.items,
        }
    }
}

/// Optional `?after={position}`: wait until the view has processed this position.
#[derive(Debug, Deserialize)]
pub struct AfterParam {
    /// A position returned by a command.
    pub after: Option<Position>,
}

async fn get_list(
    State(rt): State<Runtime>,
    Path(list_id): Path<String>,
    UrlQuery(params): UrlQuery<AfterParam>,
) -> Result<Json<ListResponse>, ApiError> {
    let list_id = ListId::parse(&list_id).map_err(|e| ApiError::bad_field("listId", e))?;
    let until = match params.after {
        Some(p) => Some(p),
        None => rt.store().head().await?,
    };
    if let Some(p) = until {
        rt.wait_for_view(VIEW_NAME, p, CATCH_UP_TIMEOUT).await?;
    }
    match read_list(&rt, list_id.as_str()).await? {
        Some(list) => Ok(Json(list.into())),
        None => Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "list_not_found",
            format!("no list {list_id}"),
        )),
    }
}

/// The module: the `todo-lists` view and `GET /api/lists/{listId}`.
pub fn module() -> Module {
    Module::new(ModuleKind::View, "todo-list-view")
        .describe("Shows a todo list with its items")
        .get("/api/lists/{listId}", get_list)
        .materialized(TodoLists)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use fairway_runtime::testing::{given, nothing};
    use todo_events::ItemId;

    fn list(s: &str) -> ListId {
        ListId::parse(s).unwrap()
    }

    fn item(s: &str) -> ItemId {
        ItemId::parse(s).unwrap()
    }

    fn created(l: &str, name: &str) -> ListCreated {
        ListCreated {
            list_id: list(l),
            name: name.into(),
        }
    }

    fn added(l: &str, i: &str, text: &str) -> ItemAdded {
        ItemAdded {
            list_id: list(l),
            item_id: item(i),
            text: text.into(),
        }
    }

    fn completed(l: &str, i: &str) -> ItemCompleted {
        ItemCompleted {
            list_id: list(l),
            item_id: item(i),
        }
    }

    fn item_entry(i: &str, text: &str, done: bool, at: u64) -> Entry {
        Entry::Item {
            item: Item {
                id: i.into(),
                text: text.into(),
                done,
            },
            added_at: Position::from_u64(at),
        }
    }

    #[test]
    fn a_list_entry_holds_its_name() {
        given([created("groceries", "Groceries")])
            .and(added("groceries", "milk", "Buy milk"))
            .view(TodoLists, "list/groceries")
            .then(Some(Entry::List {
                id: "groceries".into(),
                name: "Groceries".into(),
            }));
    }

    #[test]
    fn an_item_entry_is_added_then_completed() {
        given([created("groceries", "Groceries")])
            .and(added("groceries", "milk", "Buy milk"))
            .and(added("groceries", "bread", "Buy bread"))
            .and(completed("groceries", "milk"))
            .view(TodoLists, "item/groceries/milk")
            .then(Some(item_entry("milk", "Buy milk", true, 2)));
        given([created("groceries", "Groceries")])
            .and(added("groceries", "milk", "Buy milk"))
            .and(added("groceries", "bread", "Buy bread"))
            .view(TodoLists, "item/groceries/bread")
            .then(Some(item_entry("bread", "Buy bread", false, 3)));
    }

    #[test]
    fn lists_are_separate() {
        given([created("groceries", "Groceries"), created("work", "Work")])
            .and(added("work", "report", "Write the report"))
            .view(TodoLists, "item/groceries/report")
            .then(None);
    }

    #[test]
    fn an_unknown_list_is_absent() {
        nothing().view(TodoLists, "list/groceries").then(None);
        given([created("work", "Work")])
            .view(TodoLists, "list/groceries")
            .then(None);
    }

    /// The bug it pins: the view used to store a whole list as one value, so a list whose items
    /// outgrew the store's 64 KiB value limit wedged the view for every list.
    #[tokio::test]
    async fn regression_big_todo_list_wedges_the_list_view() {
        use dcb_core::{EventStore, MemoryStore};
        use fairway_runtime::NewEvent;
        let store = std::sync::Arc::new(MemoryStore::new());
        let rt = Runtime::new(store.clone());
        let text = "x".repeat(todo_events::MAX_TEXT_LEN);
        let mut events: Vec<NewEvent> = vec![created("big", "Big").into()];
        // 1 200 items of 2 000 characters: 2.4 MB of items, several scan pages.
        for i in 0..1200 {
            events.push(added("big", &format!("i{i:04}"), &text).into());
        }
        events.push(completed("big", "i0007").into());
        events.push(created("small", "Small").into());
        let mut n = 0u128;
        for chunk in events.chunks(500) {
            let mut batch = Vec::new();
            for e in chunk {
                n += 1;
                let id = dcb_core::Uuid::from_u128(n);
                batch.push(e.to_event(id, std::time::UNIX_EPOCH).unwrap());
            }
            store.append(batch, vec![]).await.unwrap();
        }
        rt.catch_up(&TodoLists).await.unwrap();
        let big = read_list(&rt, "big").await.unwrap().unwrap();
        assert_eq!(big.items.len(), 1200);
        assert!(
            big.items.windows(2).all(|w| w[0].id < w[1].id),
            "items in the order added"
        );
        assert_eq!(big.items.iter().filter(|i| i.done).count(), 1);
        assert!(big.items[7].done);
        let small = read_list(&rt, "small").await.unwrap().unwrap();
        assert!(small.items.is_empty());
        assert!(read_list(&rt, "nope").await.unwrap().is_none());
    }

    #[test]
    fn the_response_counts_items() {
        let r = ListResponse::from(TodoList {
            id: "a".into(),
            name: "A".into(),
            items: vec![Item {
                id: "x".into(),
                text: "X".into(),
                done: false,
            }],
        });
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id":"a","name":"A","items":[{"id":"x","text":"X","done":false}],"itemsCount":1})
        );
    }
}
