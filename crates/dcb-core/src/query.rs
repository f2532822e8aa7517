//! Queries: which events a read returns and which events fail an append condition.

use serde::{Deserialize, Serialize};

use crate::Event;

/// Selects events: either every event, or those matching at least one [`QueryItem`].
///
/// Build with [`Query::all`], [`Query::item`], [`Query::items`], [`Query::of_type`] or
/// [`Query::tagged`], and widen with [`Query::or`].
///
/// ```
/// use dcb_core::{Event, Query, QueryItem};
/// let q = Query::item(QueryItem::new().types(["BookBorrowed", "BookReturned"]).tag("book:42"))
///     .or(QueryItem::new().tag("borrower:7"));
/// assert!(q.matches(&Event::new("BookBorrowed", vec![]).tag("book:42")));
/// assert!(!q.matches(&Event::new("BookBorrowed", vec![]).tag("book:43")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// Every event.
    All,
    /// Events matching at least one item (OR). Must hold at least one item: an empty list is
    /// rejected with [`InputError::EmptyQuery`](crate::InputError::EmptyQuery).
    Items(Vec<QueryItem>),
}

/// One clause of a query. It matches an event when the event's type is one of `types` (an empty
/// list means any type) AND the event carries every tag in `tags` (an empty list means no tag
/// constraint).
///
/// An item with neither types nor tags would match every event: the store *normalises* it, so a
/// query holding one behaves exactly like [`Query::All`] (see [`Query::normalized`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryItem {
    /// Accepted event types (OR); empty = any type.
    #[serde(default)]
    pub types: Vec<String>,
    /// Required tags (AND); empty = no tag constraint.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl QueryItem {
    /// An item with no constraint yet.
    pub fn new() -> QueryItem {
        QueryItem::default()
    }

    /// Accepts one more event type.
    pub fn r#type(mut self, event_type: impl Into<String>) -> QueryItem {
        self.types.push(event_type.into());
        self
    }

    /// Accepts these event types.
    pub fn types<I, T>(mut self, types: I) -> QueryItem
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Requires one more tag.
    pub fn tag(mut self, tag: impl Into<String>) -> QueryItem {
        self.tags.push(tag.into());
        self
    }

    /// Requires all these tags.
    pub fn tags<I, T>(mut self, tags: I) -> QueryItem
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Whether this item matches `event`.
    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| *t == event.event_type))
            && self.tags.iter().all(|t| event.has_tag(t))
    }

    /// Whether this item has no constraint at all (and so matches every event).
    pub fn is_unconstrained(&self) -> bool {
        self.types.is_empty() && self.tags.is_empty()
    }
}

impl Query {
    /// Every event.
    pub fn all() -> Query {
        Query::All
    }

    /// Events matching `item`.
    pub fn item(item: QueryItem) -> Query {
        Query::Items(vec![item])
    }

    /// Events matching any of `items`.
    pub fn items(items: impl IntoIterator<Item = QueryItem>) -> Query {
        Query::Items(items.into_iter().collect())
    }

    /// Events of one type.
    pub fn of_type(event_type: impl Into<String>) -> Query {
        Query::item(QueryItem::new().r#type(event_type))
    }

    /// Events carrying one tag.
    pub fn tagged(tag: impl Into<String>) -> Query {
        Query::item(QueryItem::new().tag(tag))
    }

    /// This query OR `item`. `All.or(x)` stays `All`.
    pub fn or(self, item: QueryItem) -> Query {
        match self {
            Query::All => Query::All,
            Query::Items(mut items) => {
                items.push(item);
                Query::Items(items)
            }
        }
    }

    /// Whether `event` matches this query.
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Query::All => true,
            Query::Items(items) => items.iter().any(|i| i.matches(event)),
        }
    }

    /// The query with unconstrained items folded into [`Query::All`] and duplicate types and tags
    /// inside each item removed. Stores evaluate the normalised form.
    pub fn normalized(&self) -> Query {
        match self {
            Query::All => Query::All,
            Query::Items(items) => {
                if items.iter().any(QueryItem::is_unconstrained) {
                    return Query::All;
                }
                Query::Items(
                    items
                        .iter()
                        .map(|i| {
                            let mut types = i.types.clone();
                            types.sort();
                            types.dedup();
                            let mut tags = i.tags.clone();
                            tags.sort();
                            tags.dedup();
                            QueryItem { types, tags }
                        })
                        .collect(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str, tags: &[&str]) -> Event {
        Event::new(t.to_owned(), vec![]).tags(tags.iter().map(|t| t.to_string()))
    }

    #[test]
    fn item_semantics() {
        let e = ev("A", &["x", "y"]);
        assert!(QueryItem::new().r#type("A").matches(&e));
        assert!(!QueryItem::new().r#type("B").matches(&e));
        assert!(QueryItem::new().types(["B", "A"]).matches(&e));
        assert!(QueryItem::new().tags(["x", "y"]).matches(&e));
        assert!(!QueryItem::new().tags(["x", "z"]).matches(&e));
        assert!(QueryItem::new().r#type("A").tag("y").matches(&e));
        assert!(!QueryItem::new().r#type("B").tag("y").matches(&e));
    }

    #[test]
    fn unconstrained_item_normalises_to_all() {
        let q = Query::tagged("x").or(QueryItem::new());
        assert_eq!(q.normalized(), Query::All);
        assert!(q.matches(&ev("Z", &[])));
    }

    #[test]
    fn json_shape() {
        let q = Query::item(QueryItem::new().r#type("A").tag("x"));
        let s = serde_json::to_string(&q).unwrap_or_default();
        assert_eq!(s, r#"{"items":[{"types":["A"],"tags":["x"]}]}"#);
        assert_eq!(
            serde_json::to_string(&Query::All).unwrap_or_default(),
            r#""all""#
        );
    }
}
