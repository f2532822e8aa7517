//! Query-string parsing that never panics: a bad or unknown parameter is a 400 naming it.

use dcb_core::{Position, Query, QueryItem};
use fairway_runtime::http::ApiError;

/// The default page size of event lists.
pub(crate) const DEFAULT_LIMIT: u64 = 50;
/// The largest page size of event lists.
pub(crate) const MAX_LIMIT: u64 = 500;

/// The parameters of one request, checked against the names an endpoint accepts.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `raw` (the query string, if any), accepting only `allowed` names.
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = match raw {
            None | Some("") => Vec::new(),
            Some(raw) => serde_urlencoded::from_str(raw).map_err(|e| {
                ApiError::bad_field("query", format!("malformed query string: {e}"))
            })?,
        };
        if let Some((name, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            let shown: String = name.chars().take(40).collect();
            return Err(ApiError::bad_field(
                &shown,
                format!("unknown parameter (accepted: {})", allowed.join(", ")),
            ));
        }
        Ok(Params { pairs })
    }

    /// Every value of `name`, in order.
    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The single value of `name`; empty values count as absent, repeats are an error.
    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.all(name).filter(|v| !v.is_empty());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_field(name, "given more than once"));
        }
        Ok(first)
    }

    /// The position in `name`, if given.
    pub(crate) fn position(&self, name: &str) -> Result<Option<Position>, ApiError> {
        self.one(name)?.map(|v| parse_position(name, v)).transpose()
    }

    /// The page size in `name` (default [`DEFAULT_LIMIT`], 1 to [`MAX_LIMIT`]).
    pub(crate) fn limit(&self, name: &str) -> Result<u64, ApiError> {
        match self.one(name)? {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_field(
                    name,
                    format!("expected a whole number from 1 to {MAX_LIMIT}, got {v:?}"),
                )),
            },
        }
    }

    /// The event filter: `type` (repeatable, any of them) and `tag` (repeatable, all of them).
    pub(crate) fn query(&self) -> Result<Query, ApiError> {
        let types: Vec<String> = self
            .all("type")
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect();
        let tags: Vec<String> = self
            .all("tag")
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect();
        let item = QueryItem { types, tags };
        if item.is_unconstrained() {
            Ok(Query::All)
        } else {
            let q = Query::item(item);
            dcb_core::limits::validate_query(&q).map_err(|e| {
                let field = if e.to_string().contains("tag") {
                    "tag"
                } else {
                    "type"
                };
                ApiError::bad_field(field, e)
            })?;
            Ok(q)
        }
    }
}

/// A position from a path segment or parameter called `name`.
pub(crate) fn parse_position(name: &str, value: &str) -> Result<Position, ApiError> {
    value
        .parse::<Position>()
        .map_err(|e| ApiError::bad_field(name, e))
}
