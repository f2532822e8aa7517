//! Command `AddItem` — slice "add an item to a todo list" of the todo context.
//!
//! `POST /api/lists/{listId}/items/{itemId}` with `{"text": "..."}` → 201 `{"id", "position"}`;
//! an unknown list → 404 `list_not_found`; an item id already used in that list → 409
//! `item_exists`; a missing or empty text → 400 naming `text`; bad ids → 400 naming `listId` or
//! `itemId`.
//!
//! Given `ListCreated { list_id: "groceries" }`, when `AddItem { list_id: "groceries", item_id:
//! "milk", text: "Buy milk" }`, then `ItemAdded { list_id: "groceries", item_id: "milk", text:
//! "Buy milk" }`.
//!
//! The decision reads the list's `ListCreated` and this one item's `ItemAdded` only, so adding
//! different items to one list never contends.
//!
//! Layer: a business module. Depends on `fairway-runtime`, `dcb-core` and `todo-events` only.

use axum::extract::{Path, State};
use dcb_core::{Query, QueryItem};
use fairway_runtime::http::{ApiError, Created, JsonBody};
use fairway_runtime::{
    Command, Ctx, DomainError, DomainEvent, Module, ModuleKind, NewEvent, Rejection, Runtime,
    Sequenced,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use todo_events::{ItemAdded, ItemId, ListCreated, ListId, MAX_TEXT_LEN, item_tag, list_tag};

fairway_runtime::event_set! {
    /// What the decision reads: the list's creation and this item's addition.
    pub enum AddItemEvents { ListCreated(ListCreated), ItemAdded(ItemAdded) }
}

/// Add item `item_id` with `text` to list `list_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddItem {
    /// The list.
    pub list_id: ListId,
    /// The new item's id, unique within the list.
    pub item_id: ItemId,
    /// What is to be done (non-empty, already trimmed).
    pub text: String,
}

/// What the decision knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddItemState {
    /// The list exists.
    pub list_exists: bool,
    /// The item id is taken in this list.
    pub item_exists: bool,
}

/// Why an item cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddItemError {
    /// No list with this id.
    #[error("no list {0}")]
    ListNotFound(ListId),
    /// The item id is already used in this list.
    #[error("item {1} already exists in list {0}")]
    ItemExists(ListId, ItemId),
}

impl DomainError for AddItemError {
    fn code(&self) -> &'static str {
        match self {
            AddItemError::ListNotFound(_) => "list_not_found",
            AddItemError::ItemExists(..) => "item_exists",
        }
    }

    fn rejection(&self) -> Rejection {
        match self {
            AddItemError::ListNotFound(_) => Rejection::NotFound,
            AddItemError::ItemExists(..) => Rejection::Conflict,
        }
    }
}

impl Command for AddItem {
    type Events = AddItemEvents;
    type State = AddItemState;
    type Error = AddItemError;
    type Deps = ();

    fn query(&self) -> Query {
        Query::items([
            QueryItem::new()
                .r#type(ListCreated::TYPE)
                .tag(list_tag(&self.list_id)),
            QueryItem::new()
                .r#type(ItemAdded::TYPE)
                .tag(item_tag(&self.list_id, &self.item_id)),
        ])
    }

    fn evolve(state: &mut AddItemState, e: &Sequenced<AddItemEvents>) {
        match e.event {
            AddItemEvents::ListCreated(_) => state.list_exists = true,
            AddItemEvents::ItemAdded(_) => state.item_exists = true,
        }
    }

    fn decide(&self, state: &AddItemState, _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, AddItemError> {
        if !state.list_exists {
            return Err(AddItemError::ListNotFound(self.list_id.clone()));
        }
        if state.item_exists {
            return Err(AddItemError::ItemExists(
                self.list_id.clone(),
                self.item_id.clone(),
            ));
        }
        Ok(vec![
            ItemAdded {
                list_id: self.list_id.clone(),
                item_id: self.item_id.clone(),
                text: self.text.clone(),
            }
            .into(),
        ])
    }
}

/// The request body.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddItemBody {
    /// What is to be done (trimmed; not blank).
    #[schemars(length(min = 1, max = todo_events::MAX_TEXT_LEN))]
    pub text: String,
}

/// Checks an item text: trimmed, non-empty, at most [`MAX_TEXT_LEN`] characters.
pub fn valid_text(raw: &str) -> Result<String, ApiError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ApiError::bad_field("text", "must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_LEN {
        return Err(ApiError::bad_field(
            "text",
            format_args!("must be at most {MAX_TEXT_LEN} characters"),
        ));
    }
    Ok(text.to_owned())
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
async fn add_item(
    State(rt): State<Runtime>,
    Path(ItemPath { list_id, item_id }): Path<ItemPath>,
    JsonBody(body): JsonBody<AddItemBody>,
) -> Result<Created<ItemAddedBody>, ApiError> {
    let list_id = ListId::parse(&list_id).map_err(|e| ApiError::bad_field("listId", e))?;
    let item_id = ItemId::parse(&item_id).map_err(|e| ApiError::bad_field("itemId", e))?;
    let text = valid_text(&body.text)?;
    let done = rt
        .execute(
            &AddItem {
                list_id,
                item_id: item_id.clone(),
                text,
            },
            &(),
        )
        .await?;
    Ok(Created(ItemAddedBody {
        id: item_id.to_string(),
        position: done.last(),
    }))
}

/// The answer: the item's id and the position of its addition.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ItemAddedBody {
    /// The item's id.
    pub id: String,
    /// The addition's position.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/lists/{listId}/items/{itemId}`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "todo-add-item")
        .describe("Adds an item to a todo list")
        .post("/api/lists/{listId}/items/{itemId}", add_item)
        .command::<AddItem>()
        .appends::<ItemAdded>()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use fairway_runtime::testing::{given, nothing};

    fn list(s: &str) -> ListId {
        ListId::parse(s).unwrap()
    }

    fn item(s: &str) -> ItemId {
        ItemId::parse(s).unwrap()
    }

    fn created(l: &str) -> ListCreated {
        ListCreated {
            list_id: list(l),
            name: l.to_uppercase(),
        }
    }

    fn add(l: &str, i: &str, text: &str) -> AddItem {
        AddItem {
            list_id: list(l),
            item_id: item(i),
            text: text.into(),
        }
    }

    fn added(l: &str, i: &str, text: &str) -> ItemAdded {
        ItemAdded {
            list_id: list(l),
            item_id: item(i),
            text: text.into(),
        }
    }

    #[test]
    fn adds_an_item_to_a_list() {
        given([created("groceries")])
            .when(add("groceries", "milk", "Buy milk"))
            .then([added("groceries", "milk", "Buy milk")]);
    }

    #[test]
    fn rejects_an_unknown_list() {
        nothing()
            .when(add("groceries", "milk", "Buy milk"))
            .then_err(AddItemError::ListNotFound(list("groceries")));
        given([created("work")])
            .when(add("groceries", "milk", "Buy milk"))
            .then_err(AddItemError::ListNotFound(list("groceries")));
    }

    #[test]
    fn rejects_an_item_id_used_in_the_same_list() {
        given([created("groceries")])
            .and(added("groceries", "milk", "Buy milk"))
            .when(add("groceries", "milk", "More milk"))
            .then_err(AddItemError::ItemExists(list("groceries"), item("milk")));
    }

    #[test]
    fn the_same_item_id_in_another_list_is_fine() {
        given([created("groceries"), created("work")])
            .and(added("work", "milk", "Ask about milk"))
            .and(added("groceries", "bread", "Buy bread"))
            .when(add("groceries", "milk", "Buy milk"))
            .then([added("groceries", "milk", "Buy milk")]);
    }

    #[test]
    fn texts_are_trimmed_and_checked() {
        assert_eq!(valid_text(" milk ").unwrap(), "milk");
        assert!(valid_text("").is_err());
        assert!(valid_text(&"x".repeat(MAX_TEXT_LEN + 1)).is_err());
    }

    #[test]
    fn errors_map_to_404_and_409() {
        assert_eq!(
            AddItemError::ListNotFound(list("a")).rejection(),
            Rejection::NotFound
        );
        assert_eq!(
            AddItemError::ItemExists(list("a"), item("b")).rejection(),
            Rejection::Conflict
        );
    }
}
