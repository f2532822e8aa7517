//! Command `CompleteItem` — slice "complete an item of a todo list" of the todo context.
//!
//! `POST /api/lists/{listId}/items/{itemId}/complete` → 204; an unknown list or item → 404
//! `item_not_found`; an item already done → 409 `already_completed`; bad ids → 400 naming
//! `listId` or `itemId`.
//!
//! Given `ListCreated { list_id: "groceries" }` and `ItemAdded { list_id: "groceries", item_id:
//! "milk" }`, when `CompleteItem { list_id: "groceries", item_id: "milk" }`, then
//! `ItemCompleted { list_id: "groceries", item_id: "milk" }`.
//!
//! The decision reads this one item's events only (tag `item:{listId}/{itemId}`).
//!
//! Layer: a business module. Depends on `fairway-runtime`, `dcb-core` and `todo-events` only.

use axum::extract::{Path, State};
use axum::response::NoContent;
use dcb_core::Query;
use fairway_runtime::http::ApiError;
use fairway_runtime::{
    Command, Ctx, DomainError, Module, ModuleKind, NewEvent, Rejection, Runtime, Sequenced,
};
use schemars::JsonSchema;
use serde::Deserialize;
use todo_events::{ItemAdded, ItemCompleted, ItemId, ListId, item_tag};

fairway_runtime::event_set! {
    /// What the decision reads: the item's addition and completion.
    pub enum CompleteItemEvents { ItemAdded(ItemAdded), ItemCompleted(ItemCompleted) }
}

/// Complete item `item_id` of list `list_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteItem {
    /// The list.
    pub list_id: ListId,
    /// The item.
    pub item_id: ItemId,
}

/// Where the item stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ItemState {
    /// Never added.
    #[default]
    Unknown,
    /// Added, not done.
    Open,
    /// Done.
    Done,
}

/// Why an item cannot be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompleteItemError {
    /// No such item in this list (or no such list).
    #[error("no item {1} in list {0}")]
    ItemNotFound(ListId, ItemId),
    /// The item is done already.
    #[error("item {1} of list {0} is already completed")]
    AlreadyCompleted(ListId, ItemId),
}

impl DomainError for CompleteItemError {
    fn code(&self) -> &'static str {
        match self {
            CompleteItemError::ItemNotFound(..) => "item_not_found",
            CompleteItemError::AlreadyCompleted(..) => "already_completed",
        }
    }

    fn rejection(&self) -> Rejection {
        match self {
            CompleteItemError::ItemNotFound(..) => Rejection::NotFound,
            CompleteItemError::AlreadyCompleted(..) => Rejection::Conflict,
        }
    }
}

impl Command for CompleteItem {
    type Events = CompleteItemEvents;
    type State = ItemState;
    type Error = CompleteItemError;
    type Deps = ();

    fn query(&self) -> Query {
        Query::tagged(item_tag(&self.list_id, &self.item_id))
    }

    fn evolve(state: &mut ItemState, e: &Sequenced<CompleteItemEvents>) {
        *state = match e.event {
            CompleteItemEvents::ItemAdded(_) => ItemState::Open,
            CompleteItemEvents::ItemCompleted(_) => ItemState::Done,
        };
    }

    fn decide(
        &self,
        state: &ItemState,
        _: &Ctx<'_, ()>,
    ) -> Result<Vec<NewEvent>, CompleteItemError> {
        match state {
            ItemState::Unknown => Err(CompleteItemError::ItemNotFound(
                self.list_id.clone(),
                self.item_id.clone(),
            )),
            ItemState::Done => Err(CompleteItemError::AlreadyCompleted(
                self.list_id.clone(),
                self.item_id.clone(),
            )),
            ItemState::Open => Ok(vec![
                ItemCompleted {
                    list_id: self.list_id.clone(),
                    item_id: self.item_id.clone(),
                }
                .into(),
            ]),
        }
    }
}

/// The path parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemPath {
    /// The list.
    #[schemars(regex(pattern = todo_events::ID_PATTERN))]
    pub list_id: String,
    /// The item, unique within the list.
    #[schemars(regex(pattern = todo_events::ID_PATTERN))]
    pub item_id: String,
}
async fn complete_item(
    State(rt): State<Runtime>,
    Path(ItemPath { list_id, item_id }): Path<ItemPath>,
) -> Result<NoContent, ApiError> {
    let list_id = ListId::parse(&list_id).map_err(|e| ApiError::bad_field("listId", e))?;
    let item_id = ItemId::parse(&item_id).map_err(|e| ApiError::bad_field("itemId", e))?;
    rt.execute(&CompleteItem { list_id, item_id }, &()).await?;
    Ok(NoContent)
}

/// The module: `POST /api/lists/{listId}/items/{itemId}/complete`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "todo-complete-item")
        .describe("Marks an item of a todo list as done")
        .post("/api/lists/{listId}/items/{itemId}/complete", complete_item)
        .command::<CompleteItem>()
        .appends::<ItemCompleted>()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use fairway_runtime::testing::{given, nothing};
    use todo_events::ListCreated;

    fn list(s: &str) -> ListId {
        ListId::parse(s).unwrap()
    }

    fn item(s: &str) -> ItemId {
        ItemId::parse(s).unwrap()
    }

    fn complete(l: &str, i: &str) -> CompleteItem {
        CompleteItem {
            list_id: list(l),
            item_id: item(i),
        }
    }

    fn added(l: &str, i: &str) -> ItemAdded {
        ItemAdded {
            list_id: list(l),
            item_id: item(i),
            text: format!("do {i}"),
        }
    }

    fn completed(l: &str, i: &str) -> ItemCompleted {
        ItemCompleted {
            list_id: list(l),
            item_id: item(i),
        }
    }

    fn groceries() -> ListCreated {
        ListCreated {
            list_id: list("groceries"),
            name: "Groceries".into(),
        }
    }

    #[test]
    fn completes_an_open_item() {
        given([groceries()])
            .and(added("groceries", "milk"))
            .when(complete("groceries", "milk"))
            .then([completed("groceries", "milk")]);
    }

    #[test]
    fn rejects_an_unknown_item_or_list() {
        nothing()
            .when(complete("groceries", "milk"))
            .then_err(CompleteItemError::ItemNotFound(
                list("groceries"),
                item("milk"),
            ));
        given([groceries()])
            .and(added("groceries", "bread"))
            .and(added("work", "milk"))
            .when(complete("groceries", "milk"))
            .then_err(CompleteItemError::ItemNotFound(
                list("groceries"),
                item("milk"),
            ));
    }

    #[test]
    fn rejects_an_item_already_done() {
        given([groceries()])
            .and(added("groceries", "milk"))
            .and(completed("groceries", "milk"))
            .when(complete("groceries", "milk"))
            .then_err(CompleteItemError::AlreadyCompleted(
                list("groceries"),
                item("milk"),
            ));
    }

    #[test]
    fn other_items_do_not_matter() {
        given([groceries()])
            .and(added("groceries", "milk"))
            .and(added("groceries", "bread"))
            .and(completed("groceries", "bread"))
            .when(complete("groceries", "milk"))
            .then([completed("groceries", "milk")]);
    }
}
