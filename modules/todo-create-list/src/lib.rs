//! Command `CreateList` — slice "create a todo list" of the todo context.
//!
//! `POST /api/lists/{listId}` with `{"name": "..."}` → 201 `{"id", "position"}`; an empty or
//! missing name → 400 naming `name`; a bad id → 400 naming `listId`; a list that exists → 409
//! `list_exists`.
//!
//! Given nothing, when `CreateList { list_id: "groceries", name: "Groceries" }`, then
//! `ListCreated { list_id: "groceries", name: "Groceries" }`.
//! Given `ListCreated { list_id: "groceries", .. }`, when the same command, then the rejection
//! `ListExists`.
//!
//! Layer: a business module. Depends on `fairway-runtime`, `dcb-core` and `todo-events` only.

use axum::extract::{Path, State};
use dcb_core::Query;
use fairway_runtime::http::{ApiError, Created, JsonBody};
use fairway_runtime::{
    Command, Ctx, DomainError, Module, ModuleKind, NewEvent, Runtime, Sequenced,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use todo_events::{ListCreated, ListId, MAX_NAME_LEN, list_tag};

fairway_runtime::event_set! {
    /// What the decision reads: whether the list was already created.
    pub enum CreateListEvents { ListCreated(ListCreated) }
}

/// Create list `list_id` named `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateList {
    /// The new list's id.
    pub list_id: ListId,
    /// Its name (non-empty, already trimmed).
    pub name: String,
}

/// Why a list cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateListError {
    /// A list with this id exists.
    #[error("list {0} already exists")]
    ListExists(ListId),
}

impl DomainError for CreateListError {
    fn code(&self) -> &'static str {
        "list_exists"
    }
}

impl Command for CreateList {
    type Events = CreateListEvents;
    type State = bool;
    type Error = CreateListError;
    type Deps = ();

    fn query(&self) -> Query {
        Query::tagged(list_tag(&self.list_id))
    }

    fn evolve(exists: &mut bool, _: &Sequenced<CreateListEvents>) {
        *exists = true;
    }

    fn decide(&self, exists: &bool, _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, CreateListError> {
        if *exists {
            return Err(CreateListError::ListExists(self.list_id.clone()));
        }
        Ok(vec![
            ListCreated {
                list_id: self.list_id.clone(),
                name: self.name.clone(),
            }
            .into(),
        ])
    }
}

/// The request body.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateListBody {
    /// The list's name (trimmed; not blank).
    #[schemars(length(min = 1, max = todo_events::MAX_NAME_LEN))]
    pub name: String,
}

/// Checks a list name: trimmed, non-empty, at most [`MAX_NAME_LEN`] characters.
pub fn valid_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ApiError::bad_field("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_field(
            "name",
            format_args!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(name.to_owned())
}

/// The path parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListPath {
    /// The list.
    #[serde(rename = "listId")]
    #[schemars(regex(pattern = todo_events::ID_PATTERN))]
    pub list_id: String,
}
async fn create_list(
    State(rt): State<Runtime>,
    Path(ListPath { list_id }): Path<ListPath>,
    JsonBody(body): JsonBody<CreateListBody>,
) -> Result<Created<ListCreatedBody>, ApiError> {
    let list_id = ListId::parse(&list_id).map_err(|e| ApiError::bad_field("listId", e))?;
    let name = valid_name(&body.name)?;
    let done = rt
        .execute(
            &CreateList {
                list_id: list_id.clone(),
                name,
            },
            &(),
        )
        .await?;
    Ok(Created(ListCreatedBody {
        id: list_id.to_string(),
        position: done.last(),
    }))
}

/// The answer: the list's id and the position of its creation.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListCreatedBody {
    /// The list's id.
    pub id: String,
    /// The creation's position.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/lists/{listId}`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "todo-create-list")
        .describe("Creates a named todo list")
        .post("/api/lists/{listId}", create_list)
        .command::<CreateList>()
        .appends::<ListCreated>()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use fairway_runtime::testing::{given, nothing};

    fn id(s: &str) -> ListId {
        ListId::parse(s).unwrap()
    }

    #[test]
    fn creates_a_list() {
        nothing()
            .when(CreateList {
                list_id: id("groceries"),
                name: "Groceries".into(),
            })
            .then([ListCreated {
                list_id: id("groceries"),
                name: "Groceries".into(),
            }]);
    }

    #[test]
    fn rejects_an_existing_list() {
        given([ListCreated {
            list_id: id("groceries"),
            name: "Groceries".into(),
        }])
        .when(CreateList {
            list_id: id("groceries"),
            name: "Other".into(),
        })
        .then_err(CreateListError::ListExists(id("groceries")));
    }

    #[test]
    fn another_list_does_not_count() {
        given([ListCreated {
            list_id: id("work"),
            name: "Work".into(),
        }])
        .when(CreateList {
            list_id: id("groceries"),
            name: "Groceries".into(),
        })
        .then([ListCreated {
            list_id: id("groceries"),
            name: "Groceries".into(),
        }]);
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(valid_name("  Home ").unwrap(), "Home");
        assert_eq!(valid_name("  ").unwrap_err().code, "invalid_field");
        assert!(valid_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn the_module_describes_itself() {
        let m = module();
        assert_eq!(m.info().name, "todo-create-list");
        assert_eq!(m.info().appends, vec!["ListCreated"]);
        assert_eq!(m.info().routes[0].path, "/api/lists/{listId}");
    }
}
