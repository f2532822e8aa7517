//! Typed errors of the store.

use uuid::Uuid;

use crate::Position;

/// Why an input was rejected. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// An append with no events.
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// A query with an empty item list (use `Query::All` for every event).
    #[error("a query needs at least one item (use Query::All for every event)")]
    EmptyQuery,
    /// An empty string where a non-empty one is required.
    #[error("{field} must not be empty")]
    Empty {
        /// The field, e.g. `"type"`, `"tag"`.
        field: &'static str,
    },
    /// A string or payload over its limit.
    #[error("{field} is {len} bytes, the limit is {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many of something.
    #[error("{count} {field}, the limit is {max}")]
    TooMany {
        /// What was counted.
        field: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A control character in a type, tag or name.
    #[error("{field} contains a control character")]
    ControlCharacter {
        /// The field.
        field: &'static str,
    },
    /// The same tag twice on one event.
    #[error("duplicate tag {0:?} on one event")]
    DuplicateTag(String),
    /// The same event id twice in one append.
    #[error("duplicate event id {0} in one append")]
    DuplicateId(Uuid),
    /// A read asked for a position range that cannot hold events (e.g. `from` above `before`).
    #[error("invalid read range: {0}")]
    InvalidRange(String),
}

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An append condition failed: an event matching `fail_if_events_match` exists after `after`.
    /// Nothing was written.
    #[error("append condition {condition} failed: a matching event exists")]
    ConditionFailed {
        /// Index of the failed condition in the request's list.
        condition: usize,
    },
    /// Bad input; nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InputError),
    /// An event id of this append is already stored, but not as exactly this batch.
    #[error("event id {id} is already stored with a different batch")]
    IdConflict {
        /// The reused id.
        id: Uuid,
    },
    /// A consumer checkpoint did not advance (the stored checkpoint is at or past the new one) or
    /// did not match a [`CheckpointGuard`](crate::CheckpointGuard). Nothing was written.
    #[error("checkpoint of {consumer:?} is at {stored:?}, cannot move to {requested:?}")]
    CheckpointConflict {
        /// The consumer.
        consumer: String,
        /// Its stored checkpoint.
        stored: Option<Position>,
        /// The checkpoint that was asked for (`None`: a guarded commit that moves no checkpoint).
        requested: Option<Position>,
    },
    /// The positions are exhausted (96 bits) or a backend counter would wrap.
    #[error("position space exhausted")]
    PositionsExhausted,
    /// Stored data could not be decoded: the store is damaged.
    #[error("corrupted store: {0}")]
    Corrupted(String),
    /// The store is open in another process (or another handle of this one).
    #[error("store is locked by another process: {0}")]
    Locked(String),
    /// The store has been closed or its writer has stopped.
    #[error("store is closed")]
    Closed,
    /// A transient condition (conflicts, timeouts) exceeded the retry budget; retrying may succeed.
    #[error("transient failure, retry later: {0}")]
    Unavailable(String),
    /// The backend does not offer this operation (e.g. a consistent consumer snapshot); nothing
    /// was done.
    #[error("not supported by this store: {0}")]
    Unsupported(String),
    /// The underlying storage failed (I/O, backend error).
    #[error("storage error: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A storage error from any error type.
    pub fn storage(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Storage(Box::new(e))
    }

    /// A storage error from a message.
    pub fn storage_msg(msg: impl Into<String>) -> StoreError {
        StoreError::Storage(msg.into().into())
    }

    /// Whether this is a failed append condition.
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, StoreError::ConditionFailed { .. })
    }

    /// The error of reading the event at `position`: a [`StoreError::Corrupted`] message is
    /// prefixed with `event at position N: `; any other error is returned as it is.
    pub fn at_position(self, position: impl std::fmt::Display) -> StoreError {
        match self {
            StoreError::Corrupted(m) => {
                StoreError::Corrupted(format!("event at position {position}: {m}"))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_position_names_the_event_of_a_corruption_and_leaves_other_errors_alone() {
        let e = StoreError::Corrupted("bad checksum".into()).at_position(42);
        assert!(
            matches!(&e, StoreError::Corrupted(m) if m == "event at position 42: bad checksum"),
            "{e:?}"
        );
        let e = StoreError::Closed.at_position(crate::Position::from_u64(7));
        assert!(matches!(e, StoreError::Closed), "{e:?}");
    }
}
