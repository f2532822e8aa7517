//! Materialized view `todo-lists` — slice "show a todo list" of the todo context.
//!
//! `GET /api/lists/{listId}` → 200 `{"id","name","items":[{"id","text","done"}],"itemsCount",
//! "next"}`: one page of the list's items in the order they were added, `itemsCount` the
//! number of items in the whole list, `next` the cursor of the next page (`null` on the last
//! one). `?limit=N` items per page, 1 to [`MAX_PAGE_ITEMS`] (100), default
//! [`DEFAULT_PAGE_ITEMS`] (50); `?cursor={next}` the page after a previous one. So a response is
//! at most [`MAX_RESPONSE_BYTES`] (about 1.25 MB, for 100 items of the longest text), whatever
//! the list's length. An unknown list → 404 `list_not_found`; a bad id, limit or cursor → 400
//! naming `listId`, `limit` or `cursor`.
//!
//! The read model holds one entry per list (with its item count), one per item and one per
//! item in the order added (so a page reads only its own items), kept current in the background
//! and resumed from its checkpoint after a restart. A request first waits (up to 5 s, else 503
//! `view_not_ready` with `Retry-After`) until the view has caught up with the store's head, or
//! with `?after={position}` when given, so a client reads its own writes; while the view is
//! being rebuilt that wait lasts until the rebuild has passed that position.
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
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use todo_events::{ItemAdded, ItemCompleted, ListCreated, ListId};

/// The view's name (its storage is consumer `view:todo-lists`).
pub const VIEW_NAME: &str = "todo-lists";

/// How long a request waits for the view to catch up.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// Items per page unless `?limit` says otherwise.
pub const DEFAULT_PAGE_ITEMS: usize = 50;

/// The most items a page holds.
pub const MAX_PAGE_ITEMS: usize = 100;

/// The largest response body: [`MAX_PAGE_ITEMS`] items of the longest id and text, every
/// character of which JSON escapes to six bytes, plus the list's own fields (checked by a test).
pub const MAX_RESPONSE_BYTES: usize = 1_250_000;

fairway_runtime::event_set! {
    /// Everything a list shows.
    pub enum TodoEvents {
        ListCreated(ListCreated),
        ItemAdded(ItemAdded),
        ItemCompleted(ItemCompleted),
    }
}

/// One item of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Item {
    /// The item id.
    pub id: String,
    /// What is to be done.
    pub text: String,
    /// Completed or not.
    pub done: bool,
}

/// One entry of the read model (layout version 2). A list is stored as one `List` entry (key
/// `list/{listId}`), one `Item` entry per item (key `item/{listId}/{itemId}`) and one `Order`
/// entry per item (key `order/{listId}/{position of its ItemAdded, 24 hex digits}`), so no
/// stored value grows with the number of items and a page reads only its own items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A list's own fields.
    List {
        /// The list id.
        id: String,
        /// Its name.
        name: String,
        /// How many items it has.
        #[serde(default)]
        items: u64,
    },
    /// One item of a list.
    Item {
        /// The item.
        item: Item,
        /// Where it was added (orders the items).
        added_at: Position,
    },
    /// The item added at the position the key names.
    Order {
        /// The item's id.
        item_id: String,
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

/// The key prefix of a list's items in the order added.
pub fn order_prefix(list: &str) -> String {
    format!("order/{list}/")
}

fn order_key(list: &str, at: Position) -> String {
    format!("{}{:024x}", order_prefix(list), at.get())
}

/// The position an order key names.
fn order_position(key: &str) -> Option<Position> {
    let hex = key.rsplit('/').next()?;
    Position::new(u128::from_str_radix(hex, 16).ok()?)
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

    fn version(&self) -> u32 {
        // 1: no order entries, no item count.
        2
    }

    fn keys(&self, e: &Sequenced<TodoEvents>) -> Vec<String> {
        match &e.event {
            TodoEvents::ListCreated(c) => vec![list_key(c.list_id.as_str())],
            TodoEvents::ItemAdded(a) => {
                let list = a.list_id.as_str();
                vec![
                    format!("{}{}", items_prefix(list), a.item_id),
                    order_key(list, e.position),
                    list_key(list),
                ]
            }
            TodoEvents::ItemCompleted(c) => {
                vec![format!("{}{}", items_prefix(c.list_id.as_str()), c.item_id)]
            }
        }
    }

    fn evolve(&self, key: &str, state: &mut Option<Entry>, e: &Sequenced<TodoEvents>) {
        match (&e.event, state.as_mut()) {
            (TodoEvents::ListCreated(c), None) => {
                *state = Some(Entry::List {
                    id: c.list_id.to_string(),
                    name: c.name.clone(),
                    items: 0,
                });
            }
            (TodoEvents::ItemAdded(_), Some(Entry::List { items, .. })) => *items += 1,
            (TodoEvents::ItemAdded(a), None) if key.starts_with("order/") => {
                *state = Some(Entry::Order {
                    item_id: a.item_id.to_string(),
                });
            }
            (TodoEvents::ItemAdded(a), None) if key.starts_with("item/") => {
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
            // A second creation of one list or of one item, an item of an unknown list, or a
            // completion of an unknown item: the commands never append these, so there is
            // nothing to show.
            _ => {}
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    /// The list id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// This page's items, in the order they were added.
    pub items: Vec<Item>,
    /// How many items the whole list has.
    pub items_count: u64,
    /// The cursor of the next page (`None` on the last page).
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub next: Option<Position>,
}

/// Reads one page of list `list` from the view: up to `limit` items added after the one at
/// `cursor` (from the first when `None`), in the order they were added.
pub async fn read_page(
    rt: &Runtime,
    list: &str,
    cursor: Option<Position>,
    limit: usize,
) -> Result<Option<ListPage>, ApiError> {
    let Some(Entry::List { id, name, items }) = rt.view_get(&TodoLists, &list_key(list)).await?
    else {
        return Ok(None);
    };
    let after = cursor.map(|c| order_key(list, c));
    let mut rows = rt
        .view_scan(&TodoLists, &order_prefix(list), after.as_deref(), limit + 1)
        .await?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().and_then(|(k, _)| order_position(k))
    } else {
        None
    };
    let prefix = items_prefix(list);
    let mut page = Vec::with_capacity(rows.len());
    for (_, entry) in rows {
        let Entry::Order { item_id } = entry else {
            continue;
        };
        if let Some(Entry::Item { item, .. }) = rt
            .view_get(&TodoLists, &format!("{prefix}{item_id}"))
            .await?
        {
            page.push(item);
        }
    }
    Ok(Some(ListPage {
        id,
        name,
        items: page,
        items_count: items,
        next,
    }))
}

/// The query string: `after` (wait for this position), `limit`, `cursor`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListParams {
    /// A position returned by a command: wait until the view has processed it.
    #[schemars(regex(pattern = "^[0-9]{1,29}$"))]
    pub after: Option<String>,
    /// Items per page: 1 to 100 (default 50).
    #[schemars(regex(pattern = "^[0-9]{1,3}$"))]
    pub limit: Option<String>,
    /// The `next` of the previous page.
    #[schemars(regex(pattern = "^[0-9]{1,29}$"))]
    pub cursor: Option<String>,
}

fn position_param(name: &str, raw: Option<&str>) -> Result<Option<Position>, ApiError> {
    raw.map(|r| {
        r.parse::<Position>()
            .map_err(|e| ApiError::bad_field(name, e))
    })
    .transpose()
}

fn limit_param(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PAGE_ITEMS);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE_ITEMS).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_field(
            "limit",
            format_args!("must be a number from 1 to {MAX_PAGE_ITEMS}"),
        )),
    }
}

/// The path parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListPath {
    /// The list.
    #[serde(rename = "listId")]
    #[schemars(regex(pattern = todo_events::ID_PATTERN))]
    pub list_id: String,
}
async fn get_list(
    State(rt): State<Runtime>,
    Path(ListPath { list_id }): Path<ListPath>,
    UrlQuery(params): UrlQuery<ListParams>,
) -> Result<Json<ListPage>, ApiError> {
    let list_id = ListId::parse(&list_id).map_err(|e| ApiError::bad_field("listId", e))?;
    let after = position_param("after", params.after.as_deref())?;
    let cursor = position_param("cursor", params.cursor.as_deref())?;
    let limit = limit_param(params.limit.as_deref())?;
    let _reading = rt.view_ready(VIEW_NAME, after, CATCH_UP_TIMEOUT).await?;
    match read_page(&rt, list_id.as_str(), cursor, limit).await? {
        Some(page) => Ok(Json(page)),
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
        .describe("Shows a todo list with its items, a page at a time")
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
                items: 1,
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
        let (items, pages) = all_pages(&rt, "big", MAX_PAGE_ITEMS).await;
        assert_eq!(pages, 12);
        assert_eq!(items.len(), 1200);
        assert!(
            items.windows(2).all(|w| w[0].id < w[1].id),
            "items in the order added"
        );
        assert_eq!(items.iter().filter(|i| i.done).count(), 1);
        assert!(items[7].done);
        let small = read_page(&rt, "small", None, 10).await.unwrap().unwrap();
        assert!(small.items.is_empty());
        assert_eq!((small.items_count, small.next), (0, None));
        assert!(read_page(&rt, "nope", None, 10).await.unwrap().is_none());
    }

    /// Every page of a list, following `next`; returns the items and the number of pages.
    async fn all_pages(rt: &Runtime, list: &str, limit: usize) -> (Vec<Item>, usize) {
        let mut items = Vec::new();
        let mut cursor = None;
        for pages in 1..=100_000 {
            let page = read_page(rt, list, cursor, limit).await.unwrap().unwrap();
            assert!(page.items.len() <= limit);
            items.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return (items, pages),
            }
        }
        panic!("more than 100 000 pages");
    }

    /// Pages of a list added to out of order: items come in the order added, the count covers
    /// the whole list, and a page ending exactly at the last item has no `next`.
    #[tokio::test]
    async fn pages_follow_the_order_added() {
        use dcb_core::{EventStore, MemoryStore};
        use fairway_runtime::NewEvent;
        let store = std::sync::Arc::new(MemoryStore::new());
        let rt = Runtime::new(store.clone());
        let mut events: Vec<NewEvent> = vec![created("l", "L").into()];
        for id in ["z", "b", "m", "a"] {
            events.push(added("l", id, id).into());
        }
        events.push(completed("l", "m").into());
        for (n, e) in events.iter().enumerate() {
            let id = dcb_core::Uuid::from_u128(n as u128 + 1);
            let e = e.to_event(id, std::time::UNIX_EPOCH).unwrap();
            store.append(vec![e], vec![]).await.unwrap();
        }
        rt.catch_up(&TodoLists).await.unwrap();
        let first = read_page(&rt, "l", None, 2).await.unwrap().unwrap();
        let ids: Vec<&str> = first.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["z", "b"]);
        assert_eq!(first.items_count, 4);
        let second = read_page(&rt, "l", first.next, 2).await.unwrap().unwrap();
        let ids: Vec<&str> = second.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["m", "a"]);
        assert!(second.items[0].done);
        assert_eq!(second.next, None);
        let (all, pages) = all_pages(&rt, "l", 3).await;
        assert_eq!((all.len(), pages), (4, 2));
    }

    /// The bug it pins: `GET /api/lists/{id}` answered the whole list, 40.8 MB for 20 000
    /// items. The largest page is now bounded by [`MAX_RESPONSE_BYTES`], even with the longest
    /// ids and texts made of characters JSON escapes to six bytes each.
    #[test]
    fn regression_the_largest_page_is_bounded() {
        let worst = |n: usize| "\u{1}".repeat(n);
        let page = ListPage {
            id: "l".repeat(todo_events::MAX_ID_LEN),
            name: worst(todo_events::MAX_NAME_LEN),
            items: (0..MAX_PAGE_ITEMS)
                .map(|_| Item {
                    id: "i".repeat(todo_events::MAX_ID_LEN),
                    text: worst(todo_events::MAX_TEXT_LEN),
                    done: false,
                })
                .collect(),
            items_count: u64::MAX,
            next: Some(Position::MAX),
        };
        let size = serde_json::to_vec(&page).unwrap().len();
        assert!(size <= MAX_RESPONSE_BYTES, "{size} bytes");
        assert!(
            size > MAX_RESPONSE_BYTES * 9 / 10,
            "the bound is tight: {size} bytes"
        );
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(limit_param(None).unwrap(), DEFAULT_PAGE_ITEMS);
        assert_eq!(limit_param(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "x", ""] {
            let e = limit_param(Some(bad)).unwrap_err();
            assert!(e.message.starts_with("limit"), "{bad}: {e:?}");
        }
        assert!(position_param("cursor", Some("12")).unwrap().is_some());
        let e = position_param("cursor", Some("x")).unwrap_err();
        assert!(e.message.starts_with("cursor"), "{e:?}");
        let at = Position::from_u64(0xabc);
        assert_eq!(order_position(&order_key("l", at)), Some(at));
    }

    #[test]
    fn the_page_shape() {
        let r = ListPage {
            id: "a".into(),
            name: "A".into(),
            items: vec![Item {
                id: "x".into(),
                text: "X".into(),
                done: false,
            }],
            items_count: 3,
            next: Some(Position::from_u64(7)),
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id":"a","name":"A","items":[{"id":"x","text":"X","done":false}],"itemsCount":3,"next":"7"})
        );
    }
}
