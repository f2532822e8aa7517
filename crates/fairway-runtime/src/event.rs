//! Typed events: one struct per event ([`DomainEvent`]), one enum per reader ([`EventSet`]), the
//! encoded form a decision returns ([`NewEvent`]) and the decoded form handlers see ([`Sequenced`]).

use std::fmt::{self, Debug, Display};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dcb_core::{
    Event, Metadata as StoreMetadata, Position, Query, QueryItem, SequencedEvent, Tags,
};
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

    /// The version of this struct's shape (1 until the shape changes incompatibly). Events are
    /// stored with it in their metadata ([`SCHEMA_VERSION_KEY`]) when it is above 1; an event
    /// stored without it is version 1.
    const VERSION: u32 = 1;

    /// Names this event type was stored under before it was renamed, e.g. `&["UserSignedUp"]`.
    /// Readers find and decode events stored under these names as this type: queries and append
    /// conditions include them, so a rename never hides old events from a decision.
    const FORMER_TYPES: &'static [&'static str] = &[];

    /// Turns stored data of version `from` (below [`DomainEvent::VERSION`]) into version
    /// `from + 1`, as JSON. Called once per step on read, before decoding, so an event stored as
    /// version 1 reaches a version-3 struct through `upcast(1, ..)` then `upcast(2, ..)`.
    ///
    /// ```
    /// # use fairway_runtime::{DomainEvent, tag};
    /// use serde_json::{Value, json};
    /// #[derive(Debug, serde::Serialize, serde::Deserialize)]
    /// struct PriceSet { item: String, cents: u64, currency: String }
    /// impl DomainEvent for PriceSet {
    ///     const TYPE: &'static str = "PriceSet";
    ///     const VERSION: u32 = 2;
    ///     fn tags(&self) -> Vec<String> { vec![tag("item", &self.item)] }
    ///     // Version 1 stored {"item", "euros": 12.5}.
    ///     fn upcast(from: u32, mut data: Value) -> Result<Value, String> {
    ///         match from {
    ///             1 => {
    ///                 let euros = data["euros"].as_f64().ok_or("euros is not a number")?;
    ///                 data["cents"] = json!((euros * 100.0).round() as u64);
    ///                 data["currency"] = json!("EUR");
    ///                 Ok(data)
    ///             }
    ///             v => Err(format!("no upcaster from version {v}")),
    ///         }
    ///     }
    /// }
    /// ```
    fn upcast(from: u32, data: serde_json::Value) -> Result<serde_json::Value, String> {
        let _ = data;
        Err(format!(
            "{} has no upcaster from version {from} (its VERSION is {})",
            Self::TYPE,
            Self::VERSION
        ))
    }
}

/// Metadata key holding the schema version of an event's data ([`DomainEvent::VERSION`]); absent
/// means version 1.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";

/// The schema version an event's metadata records: 1 when absent; an unreadable value is a
/// [`DecodeError::Data`].
pub fn stored_version(event_type: &str, metadata: &StoreMetadata) -> Result<u32, DecodeError> {
    match metadata.value(SCHEMA_VERSION_KEY) {
        None => Ok(1),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| DecodeError::Data {
                event_type: event_type.to_owned(),
                message: format!("metadata {SCHEMA_VERSION_KEY} is {v:?}, not a version >= 1"),
            }),
    }
}

/// Decodes stored data of `stored_type` (the type's name or one of its
/// [`DomainEvent::FORMER_TYPES`]) at schema version `version` as `E`, applying `E`'s upcasters
/// first when the version is older than [`DomainEvent::VERSION`]. Data of the current version is
/// decoded directly, without an intermediate JSON value. Data of a newer version than `E` knows
/// (written by a newer deployment) is decoded as it is, so additive changes stay readable.
pub fn decode_as<E: DomainEvent>(
    stored_type: &str,
    version: u32,
    data: &[u8],
) -> Result<E, DecodeError> {
    let data_error = |message: String| DecodeError::Data {
        event_type: stored_type.to_owned(),
        message,
    };
    if version >= E::VERSION {
        return serde_json::from_slice(data).map_err(|e| data_error(e.to_string()));
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| data_error(e.to_string()))?;
    for from in version.max(1)..E::VERSION {
        value = E::upcast(from, value).map_err(|message| DecodeError::Upcast {
            event_type: stored_type.to_owned(),
            from,
            message,
        })?;
    }
    serde_json::from_value(value).map_err(|e| {
        data_error(format!(
            "{e} (after upcasting from version {version} to {})",
            E::VERSION
        ))
    })
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

    /// Per variant type, its [`DomainEvent::FORMER_TYPES`] (none by default).
    const FORMER_TYPES: &'static [(&'static str, &'static [&'static str])] = &[];

    /// Decodes one stored event whose metadata carries no schema version (version 1).
    fn decode(event_type: &str, data: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_versioned(event_type, 1, data)
    }

    /// Decodes one stored event of schema version `version` (see [`decode_as`]); `event_type`
    /// may be a variant's current or former name.
    fn decode_versioned(event_type: &str, version: u32, data: &[u8]) -> Result<Self, DecodeError>;

    /// Every stored type name this set decodes: the variants' types and their former names.
    fn stored_types() -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Self::TYPES.to_vec();
        for (_, former) in Self::FORMER_TYPES {
            for name in *former {
                if !out.contains(name) {
                    out.push(name);
                }
            }
        }
        out
    }
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

            const FORMER_TYPES: &'static [(&'static str, &'static [&'static str])] = &[$((
                <$ty as $crate::DomainEvent>::TYPE,
                <$ty as $crate::DomainEvent>::FORMER_TYPES,
            )),+];

            fn decode_versioned(
                event_type: &str,
                version: u32,
                data: &[u8],
            ) -> ::std::result::Result<Self, $crate::DecodeError> {
                $(
                    if event_type == <$ty as $crate::DomainEvent>::TYPE
                        || <$ty as $crate::DomainEvent>::FORMER_TYPES.contains(&event_type)
                    {
                        return $crate::decode_as::<$ty>(event_type, version, data)
                            .map($name::$variant);
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
    /// An upcaster refused the stored data.
    #[error("cannot upcast {event_type} data from version {from}: {message}")]
    Upcast {
        /// The stored type.
        event_type: String,
        /// The version the failing step started from.
        from: u32,
        /// The upcaster's message.
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

/// [`restrict`] to the types `E` decodes, renames included: an item naming a type also matches the
/// names that type was stored under before ([`DomainEvent::FORMER_TYPES`]), so reads and append
/// conditions see events stored before a rename.
pub fn restrict_set<E: EventSet>(query: &Query) -> Result<Query, TypeOutsideSet> {
    let restricted = restrict(query, &E::stored_types())?;
    if E::FORMER_TYPES.iter().all(|(_, former)| former.is_empty()) {
        return Ok(restricted);
    }
    Ok(match restricted {
        Query::All => Query::All,
        Query::Items(items) => Query::Items(
            items
                .into_iter()
                .map(|mut item| {
                    for (current, former) in E::FORMER_TYPES {
                        if item.types.iter().any(|t| t == current) {
                            for name in *former {
                                if !item.types.iter().any(|t| t == name) {
                                    item.types.push((*name).to_owned());
                                }
                            }
                        }
                    }
                    item
                })
                .collect(),
        ),
    })
}

/// Object-safe view of a [`DomainEvent`], so one batch can hold several event types.
trait ErasedEvent: Debug + Send + Sync {
    fn event_type(&self) -> &'static str;
    fn version(&self) -> u32;
    fn tags(&self) -> Vec<String>;
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
}

impl<E: DomainEvent> ErasedEvent for E {
    fn event_type(&self) -> &'static str {
        E::TYPE
    }
    fn version(&self) -> u32 {
        E::VERSION
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
        let event = Event::new(self.event_type(), self.encode_data()?)
            .tags(self.tags())
            .meta(RECORDED_AT_KEY, ms.to_string())
            .with_id(id);
        Ok(match self.0.version() {
            1 => event,
            v => event.meta(SCHEMA_VERSION_KEY, v.to_string()),
        })
    }
}

/// The metadata handlers see besides the data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// The event id, when it has one.
    pub id: Option<Uuid>,
    /// When the event was recorded, when known.
    pub recorded_at: Option<SystemTime>,
    /// Every metadata entry as stored: read where the store holds it ([`StoreMetadata::value`],
    /// [`StoreMetadata::entries`]), or as a `BTreeMap<String, String>` it dereferences to (built
    /// on first use). Read from a store, it shares the read's buffer: keep
    /// `entries.clone().into_map()` rather than the entries themselves in long-lived state.
    pub entries: StoreMetadata,
}

/// A decoded event with its position, tags and metadata.
#[derive(Debug, Clone)]
pub struct Sequenced<E> {
    /// Where it sits in the log.
    pub position: Position,
    /// The decoded data.
    pub event: E,
    /// Its tags (a list of strings: see [`Tags`]).
    pub tags: Tags,
    /// Id, recorded-at time and raw metadata.
    pub metadata: Metadata,
}

impl<E: EventSet> Sequenced<E> {
    /// Decodes a stored event.
    pub fn decode(stored: SequencedEvent) -> Result<Sequenced<E>, DecodeError> {
        let SequencedEvent { position, event } = stored;
        let version = stored_version(&event.event_type, &event.metadata)?;
        let decoded = E::decode_versioned(&event.event_type, version, &event.data)?;
        let recorded_at = event
            .metadata
            .value(RECORDED_AT_KEY)
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
