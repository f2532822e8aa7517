//! `todo-events`: the events of the todo context (`ListCreated`, `ItemAdded`, `ItemCompleted`),
//! their tags and the validated id newtypes. It is the only code the `todo-*` modules share.
//!
//! Layer: a context's events crate, below its modules. Depends on `fairway-runtime` only (for
//! [`DomainEvent`]); must not depend on any module, any backend, or HTTP.
//!
//! Tags: every event carries `list:{listId}`; item events also carry `item:{listId}/{itemId}`, so
//! a decision about one item reads that item's events only.

use std::fmt;

use fairway_runtime::{DomainEvent, tag};
use serde::{Deserialize, Serialize};

/// Longest accepted id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// The ids' rule as a regular expression, for the API contract: 1 to [`MAX_ID_LEN`] bytes of
/// letters, digits, `-` and `_` (what `parse` accepts).
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// Longest accepted list name, in characters.
pub const MAX_NAME_LEN: usize = 200;
/// Longest accepted item text, in characters.
pub const MAX_TEXT_LEN: usize = 2000;

/// Why a path id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("must not be empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("must be at most {MAX_ID_LEN} characters")]
    TooLong,
    /// The id holds a character outside `A-Z a-z 0-9 - _`.
    #[error("may contain only letters, digits, '-' and '_'")]
    Charset,
}

fn check_id(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(IdError::Charset);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates an id: 1 to [`MAX_ID_LEN`] characters among `A-Z a-z 0-9 - _`.
            pub fn parse(raw: &str) -> Result<$name, IdError> {
                check_id(raw)?;
                Ok($name(raw.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The id of a todo list (chosen by the client, e.g. `groceries`).
    ListId
);
id_type!(
    /// The id of an item, unique within its list.
    ItemId
);

/// The tag every event of list `list` carries: `list:{list}`.
pub fn list_tag(list: &ListId) -> String {
    tag("list", list)
}

/// The tag every event of one item carries: `item:{list}/{item}`.
pub fn item_tag(list: &ListId, item: &ItemId) -> String {
    tag("item", format_args!("{list}/{item}"))
}

/// A list was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListCreated {
    /// The list.
    pub list_id: ListId,
    /// Its name.
    pub name: String,
}

impl DomainEvent for ListCreated {
    const TYPE: &'static str = "ListCreated";
    fn tags(&self) -> Vec<String> {
        vec![list_tag(&self.list_id)]
    }
}

/// An item was added to a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemAdded {
    /// The list.
    pub list_id: ListId,
    /// The item, unique within the list.
    pub item_id: ItemId,
    /// What is to be done.
    pub text: String,
}

impl DomainEvent for ItemAdded {
    const TYPE: &'static str = "ItemAdded";
    fn tags(&self) -> Vec<String> {
        vec![
            list_tag(&self.list_id),
            item_tag(&self.list_id, &self.item_id),
        ]
    }
}

/// An item was completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemCompleted {
    /// The list.
    pub list_id: ListId,
    /// The item.
    pub item_id: ItemId,
}

impl DomainEvent for ItemCompleted {
    const TYPE: &'static str = "ItemCompleted";
    fn tags(&self) -> Vec<String> {
        vec![
            list_tag(&self.list_id),
            item_tag(&self.list_id, &self.item_id),
        ]
    }
}

#[cfg(test)]
mod id_pattern_tests {
    use super::*;

    #[test]
    fn the_id_pattern_states_the_length_limit() {
        assert!(ID_PATTERN.ends_with(&format!("{{1,{MAX_ID_LEN}}}$")));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(ListId::parse("groceries_2-x").is_ok());
        assert_eq!(ListId::parse(""), Err(IdError::Empty));
        assert_eq!(ListId::parse(&"a".repeat(65)), Err(IdError::TooLong));
        assert!(ListId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(ItemId::parse("a/b"), Err(IdError::Charset));
        assert_eq!(ItemId::parse("é"), Err(IdError::Charset));
    }

    #[test]
    fn tags_name_the_list_and_the_item() {
        let list = ListId::parse("l1").unwrap();
        let item = ItemId::parse("i1").unwrap();
        let added = ItemAdded {
            list_id: list.clone(),
            item_id: item.clone(),
            text: "milk".into(),
        };
        assert_eq!(added.tags(), vec!["list:l1", "item:l1/i1"]);
        assert_eq!(
            ListCreated {
                list_id: list,
                name: "x".into()
            }
            .tags(),
            vec!["list:l1"]
        );
    }
}
