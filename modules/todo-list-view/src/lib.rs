//! Materialized view `todo-lists` — slice "show a todo list" of the todo context.
//!
//! `GET /api/lists/{listId}` → 200 `{"id","name","items":[{"id","text","done"}],"itemsCount"}`;
//! an unknown list → 404 `list_not_found`; a bad id → 400 naming `listId`. The read model holds
//! one entry per list, kept current in the background and resumed from its checkpoint after a
//! restart. A request first waits (up to 5 s, else 503) until the view has caught up with the
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

/// One list, as stored in the read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoList {
    /// The list id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its items, in the order they were added.
    pub items: Vec<Item>,
}

/// The materialized view: key = list id.
#[derive(Debug, Clone, Copy, Default)]
pub struct TodoLists;

impl MaterializedView for TodoLists {
    type Events = TodoEvents;
    type State = TodoList;

    fn name(&self) -> &str {
        VIEW_NAME
    }

    fn keys(&self, e: &Sequenced<TodoEvents>) -> Vec<String> {
        let list = match &e.event {
            TodoEvents::ListCreated(c) => &c.list_id,
            TodoEvents::ItemAdded(a) => &a.list_id,
            TodoEvents::ItemCompleted(c) => &c.list_id,
        };
        vec![list.to_string()]
    }

    fn evolve(&self, _key: &str, state: &mut Option<TodoList>, e: &Sequenced<TodoEvents>) {
        match (&e.event, state.as_mut()) {
            (TodoEvents::ListCreated(c), None) => {
                *state = Some(TodoList {
                    id: c.list_id.to_string(),
                    name: c.name.clone(),
                    items: Vec::new(),
                });
            }
            (TodoEvents::ItemAdded(a), Some(list))
                if !list.items.iter().any(|i| i.id == a.item_id.as_str()) =>
            {
                list.items.push(Item {
                    id: a.item_id.to_string(),
                    text: a.text.clone(),
                    done: false,
                });
            }
            (TodoEvents::ItemCompleted(c), Some(list)) => {
                if let Some(item) = list.items.iter_mut().find(|i| i.id == c.item_id.as_str()) {
                    item.done = true;
                }
            }
            // A second creation of one list, or item events without a list: the commands never
            // append these, so there is nothing to show.
            _ => {}
        }
    }
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
    match rt.view_get(&TodoLists, list_id.as_str()).await? {
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

    #[test]
    fn shows_a_list_with_its_items() {
        given([created("groceries", "Groceries")])
            .and(added("groceries", "milk", "Buy milk"))
            .and(added("groceries", "bread", "Buy bread"))
            .and(completed("groceries", "milk"))
            .view(TodoLists, "groceries")
            .then(Some(TodoList {
                id: "groceries".into(),
                name: "Groceries".into(),
                items: vec![
                    Item {
                        id: "milk".into(),
                        text: "Buy milk".into(),
                        done: true,
                    },
                    Item {
                        id: "bread".into(),
                        text: "Buy bread".into(),
                        done: false,
                    },
                ],
            }));
    }

    #[test]
    fn lists_are_separate() {
        given([created("groceries", "Groceries"), created("work", "Work")])
            .and(added("work", "report", "Write the report"))
            .view(TodoLists, "groceries")
            .then(Some(TodoList {
                id: "groceries".into(),
                name: "Groceries".into(),
                items: vec![],
            }));
    }

    #[test]
    fn an_unknown_list_is_absent() {
        nothing().view(TodoLists, "groceries").then(None);
        given([created("work", "Work")])
            .view(TodoLists, "groceries")
            .then(None);
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
