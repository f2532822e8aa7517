//! Typed events: one struct per event ([`DomainEvent`]), one enum per reader ([`EventSet`]), the
//! encoded form a decision returns ([`NewEvent`]) and the decoded form handlers see ([`Sequenced`]).

use std::collections::BTreeMap;
use std::fmt::{self, Debug, Display};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dcb_core::{Event, Position, Query, QueryItem, SequencedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// Metadata key holding the recorded-at time, as milliseconds since the Unix epoch.
pub const RECORDED_AT_KEY: &str = "recorded_at_ms";

/// One kind of domain event: its stored type name and its tags, declared once.
///
/// The data is stored as JSON, so any tool can read it.
///
/// ```
/// use fairway_runtime::{DomainEvent, tag};
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// struct UserRegistered { user_id: u64, email: String }
/// impl DomainEvent for UserRegistered {
///     const TYPE: &'static str = "UserRegistered";
///     fn tags(&self) -> Vec<String> { vec![tag("user", self.user_id), tag("email", &self.email)] }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Fairway domain event",
    note = "implement `fairway_runtime::DomainEvent` for it: `const TYPE` (its stored name) and `fn tags`"
)]
pub trait DomainEvent: Serialize + DeserializeOwned + Debug + Send + Sync + 'static {
    /// The stored event type, e.g. `"UserRegistered"`.
    const TYPE: &'static str;

    /// The tags this event carries, e.g. `["user:42", "email:ada@example.com"]` (see [`tag`]).
    fn tags(&self) -> Vec<String>;

    /// Top-level keys of the stored JSON data that hold secrets (password hashes, tokens): the
    /// dev console and `fairway events` show them as [`REDACTED`] unless the operator asks for
    /// them. The keys are the JSON names (after any `serde(rename)`), e.g. `&["passwordHash"]`.
    /// Declared once here, they reach the host through the modules' self-description
    /// ([`ModuleInfo::sensitive_fields`](crate::ModuleInfo::sensitive_fields)).
    const SENSITIVE_FIELDS: &'static [&'static str] = &[];
}

/// What a redacted field's value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Replaces the value of each of `fields` present in the JSON object `data` with [`REDACTED`];
/// returns how many were replaced. Anything that is not an object is left as it is.
///
/// ```
/// let mut data = serde_json::json!({"userId": "u1", "passwordHash": "$argon2id$..."});
/// assert_eq!(fairway_runtime::redact(&mut data, ["passwordHash"]), 1);
/// assert_eq!(data["passwordHash"], "[redacted]");
/// ```
pub fn redact<S: AsRef<str>>(
    data: &mut serde_json::Value,
    fields: impl IntoIterator<Item = S>,
) -> usize {
    let Some(object) = data.as_object_mut() else {
        return 0;
    };
    let mut n = 0;
    for field in fields {
        if let Some(v) = object.get_mut(field.as_ref()) {
            *v = serde_json::Value::String(REDACTED.to_owned());
            n += 1;
        }
    }
    n
}

/// A tag `"{prefix}:{value}"`, e.g. `tag("user", 42)` is `"user:42"`.
pub fn tag(prefix: &str, value: impl Display) -> String {
    format!("{prefix}:{value}")
}

/// The events a command, view or automation reads, as one Rust enum (build it with
/// [`event_set!`](crate::event_set)). Queries are restricted to these types, so decoding never
/// meets an unknown type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event set",
    note = "declare it with `fairway_runtime::event_set! {{ pub enum {Self} {{ Variant(EventStruct), .. }} }}`"
)]
pub trait EventSet: Sized + Debug + Send + Sync + 'static {
    /// The stored types of the variants.
    const TYPES: &'static [&'static str];

    /// Per variant type, its [`DomainEvent::SENSITIVE_FIELDS`] (none by default).
    const SENSITIVE_FIELDS: &'static [(&'static str, &'static [&'static str])] = &[];

    /// Decodes one stored event.
    fn decode(event_type: &str, data: &[u8]) -> Result<Self, DecodeError>;
}

/// Declares an [`EventSet`] enum: one variant per event struct.
///
/// ```
/// # use fairway_runtime::{DomainEvent, tag};
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct Opened { id: u64 }
/// # impl DomainEvent for Opened { const TYPE: &'static str = "Opened"; fn tags(&self) -> Vec<String> { vec![tag("account", self.id)] } }
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct Closed { id: u64 }
/// # impl DomainEvent for Closed { const TYPE: &'static str = "Closed"; fn tags(&self) -> Vec<String> { vec![tag("account", self.id)] } }
/// fairway_runtime::event_set! {
///     /// What the account commands read.
///     pub enum AccountEvents { Opened(Opened), Closed(Closed) }
/// }
/// use fairway_runtime::EventSet;
/// assert_eq!(AccountEvents::TYPES, &["Opened", "Closed"]);
/// ```
#[macro_export]
macro_rules! event_set {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident($ty:ty)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name {
            $(
                #[doc = concat!("A `", stringify!($ty), "` event.")]
                $variant($ty),
            )+
        }

        impl $crate::EventSet for $name {
            const TYPES: &'static [&'static str] = &[$(<$ty as $crate::DomainEvent>::TYPE),+];

            const SENSITIVE_FIELDS: &'static [(&'static str, &'static [&'static str])] = &[$((
                <$ty as $crate::DomainEvent>::TYPE,
                <$ty as $crate::DomainEvent>::SENSITIVE_FIELDS,
            )),+];

            fn decode(event_type: &str, data: &[u8]) -> ::std::result::Result<Self, $crate::DecodeError> {
                $(
                    if event_type == <$ty as $crate::DomainEvent>::TYPE {
                        return $crate::__private::serde_json::from_slice::<$ty>(data)
                            .map($name::$variant)
                            .map_err(|e| $crate::DecodeError::Data {
                                event_type: event_type.to_owned(),
                                message: e.to_string(),
                            });
                    }
                )+
                ::std::result::Result::Err($crate::DecodeError::UnknownType(event_type.to_owned()))
            }
        }
    };
}

/// A stored event could not be turned into its Rust type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The type is not one of the set's (a query reached outside its event set).
    #[error("event type {0:?} is not in this event set")]
    UnknownType(String),
    /// The JSON data does not fit the struct.
    #[error("cannot decode {event_type} data: {message}")]
    Data {
        /// The stored type.
        event_type: String,
        /// The JSON error.
        message: String,
    },
}

/// A query names an event type outside the reader's [`EventSet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query names event type {0:?}, which is not in the reader's event set")]
pub struct TypeOutsideSet(pub String);

/// Restricts `query` to the types of an event set: an item with no types gets all of `types`,
/// `Query::All` becomes one item with all of `types`. An item naming a type outside `types` is a
/// programming error reported as [`TypeOutsideSet`].
pub fn restrict(query: &Query, types: &[&str]) -> Result<Query, TypeOutsideSet> {
    let all: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    match query.normalized() {
        Query::All => Ok(Query::item(QueryItem::new().types(all))),
        Query::Items(items) => {
            let mut out = Vec::with_capacity(items.len());
            for mut item in items {
                if item.types.is_empty() {
                    item.types = all.clone();
                } else if let Some(bad) = item.types.iter().find(|t| !types.contains(&t.as_str())) {
                    return Err(TypeOutsideSet(bad.clone()));
                }
                out.push(item);
            }
            Ok(Query::Items(out))
        }
    }
}

/// Object-safe view of a [`DomainEvent`], so one batch can hold several event types.
trait ErasedEvent: Debug + Send + Sync {
    fn event_type(&self) -> &'static str;
    fn tags(&self) -> Vec<String>;
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
}

impl<E: DomainEvent> ErasedEvent for E {
    fn event_type(&self) -> &'static str {
        E::TYPE
    }
    fn tags(&self) -> Vec<String> {
        DomainEvent::tags(self)
    }
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// An event a decision wants appended: any [`DomainEvent`], converted with `.into()`.
pub struct NewEvent(Box<dyn ErasedEvent>);

impl<E: DomainEvent> From<E> for NewEvent {
    fn from(event: E) -> NewEvent {
        NewEvent(Box::new(event))
    }
}

impl Debug for NewEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Debug::fmt(&self.0, f)
    }
}

/// Why a [`NewEvent`] could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {event_type} as JSON: {source}")]
pub struct EncodeError {
    /// The event type.
    pub event_type: &'static str,
    /// The JSON error.
    #[source]
    pub source: serde_json::Error,
}

impl NewEvent {
    /// The stored type.
    pub fn event_type(&self) -> &'static str {
        self.0.event_type()
    }

    /// The tags.
    pub fn tags(&self) -> Vec<String> {
        self.0.tags()
    }

    /// The data as a JSON value (for comparisons in tests).
    pub fn json(&self) -> Result<serde_json::Value, EncodeError> {
        let bytes = self.encode_data()?;
        serde_json::from_slice(&bytes).map_err(|source| EncodeError {
            event_type: self.event_type(),
            source,
        })
    }

    fn encode_data(&self) -> Result<Vec<u8>, EncodeError> {
        self.0.to_json().map_err(|source| EncodeError {
            event_type: self.event_type(),
            source,
        })
    }

    /// The store event: type, tags, JSON data, the id and the recorded-at time.
    pub fn to_event(&self, id: Uuid, recorded_at: SystemTime) -> Result<Event, EncodeError> {
        let ms = recorded_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Ok(Event::new(self.event_type(), self.encode_data()?)
            .tags(self.tags())
            .meta(RECORDED_AT_KEY, ms.to_string())
            .with_id(id))
    }
}

/// The metadata handlers see besides the data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// The event id, when it has one.
    pub id: Option<Uuid>,
    /// When the event was recorded, when known.
    pub recorded_at: Option<SystemTime>,
    /// Every metadata entry as stored.
    pub entries: BTreeMap<String, String>,
}

/// A decoded event with its position, tags and metadata.
#[derive(Debug, Clone)]
pub struct Sequenced<E> {
    /// Where it sits in the log.
    pub position: Position,
    /// The decoded data.
    pub event: E,
    /// Its tags.
    pub tags: Vec<String>,
    /// Id, recorded-at time and raw metadata.
    pub metadata: Metadata,
}

impl<E: EventSet> Sequenced<E> {
    /// Decodes a stored event.
    pub fn decode(stored: SequencedEvent) -> Result<Sequenced<E>, DecodeError> {
        let SequencedEvent { position, event } = stored;
        let decoded = E::decode(&event.event_type, &event.data)?;
        let recorded_at = event
            .metadata
            .get(RECORDED_AT_KEY)
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        Ok(Sequenced {
            position,
            event: decoded,
            tags: event.tags,
            metadata: Metadata {
                id: event.id,
                recorded_at,
                entries: event.metadata,
            },
        })
    }
}

impl<E> Sequenced<E> {
    /// Whether the event carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn restrict_fills_and_checks_types() {
        let types = ["A", "B"];
        let q = restrict(&Query::All, &types).unwrap();
        assert_eq!(q, Query::item(QueryItem::new().types(["A", "B"])));
        let q = restrict(&Query::tagged("x:1"), &types).unwrap();
        assert_eq!(
            q,
            Query::item(QueryItem::new().types(["A", "B"]).tag("x:1"))
        );
        let q = restrict(&Query::of_type("B"), &types).unwrap();
        assert_eq!(q, Query::of_type("B"));
        assert_eq!(
            restrict(&Query::of_type("C"), &types),
            Err(TypeOutsideSet("C".into()))
        );
        // An unconstrained item is All in disguise: it becomes the whole set too.
        let q = restrict(&Query::tagged("x").or(QueryItem::new()), &types).unwrap();
        assert_eq!(q, Query::item(QueryItem::new().types(["A", "B"])));
    }
}
