//! Pattern: **command**. Slice: users — change one's username, bio or image.
//!
//! `PATCH /api/user/details` with `Authorization: Token <token>` and
//! `{"username"?,"bio"?,"image"?}` appends `UserDetailsChanged` with the fields that differ and
//! answers 204 (an absent field is unchanged, `null` clears the bio or image; nothing different
//! appends nothing). 400 naming an invalid field, 401 without a valid token (a token naming an
//! unknown user is refused as revoked; the command's own answer to one is 404
//! `user_not_found`), 409 `username_taken` when another user holds
//! the username (a username given up is free at once). Reads: the user's details, and, when the
//! username changes, who holds the new one — each its own append condition.
//!
//! Given/when/then:
//!
//! ```
//! use users_events::{Email, UserDetailsChanged, UserId, UserRegistered, Username};
//! use users_change_details::ChangeDetails;
//! use fairway_runtime::testing::given;
//! let u1 = UserId::parse("u1")?;
//! // Given ann registered, when she sets a bio, then the bio is changed.
//! given([UserRegistered { user_id: u1.clone(), username: Username::parse("ann")?,
//!     email: Email::parse("ann@x.io")?, password_hash: "h".into(), registered_at_ms: 0 }])
//!     .when(ChangeDetails { user_id: u1.clone(), username: None,
//!         bio: Some(Some("hi".into())), image: None })
//!     .then([UserDetailsChanged { user_id: u1, username: None, previous_username: None,
//!         bio: Some(Some("hi".into())), image: None }]);
//! # Ok::<(), users_events::ValueError>(())
//! ```

use std::collections::HashMap;

use axum::extract::State;
use axum::response::NoContent;
use dcb_core::{Query, QueryItem};
use fairway_runtime::http::{ApiError, JsonBody};
use fairway_runtime::{
    Command, Ctx, DomainError, DomainEvent, Module, ModuleKind, NewEvent, Read, Rejection, Runtime,
    Sequenced,
};
use schemars::JsonSchema;
use serde::Deserialize;
use users_events::{
    AuthUser, UserDetailsChanged, UserId, UserRegistered, Username, check_bio, check_image,
    double_option, user_tag, username_tag,
};

/// `user_id` changes some details; `None` = unchanged, `Some(None)` = cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeDetails {
    /// The user.
    pub user_id: UserId,
    /// A new username.
    pub username: Option<Username>,
    /// A new bio, or `Some(None)` to clear it.
    pub bio: Option<Option<String>>,
    /// A new image link, or `Some(None)` to clear it.
    pub image: Option<Option<String>>,
}

/// Why a details change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeDetailsError {
    /// No such user.
    #[error("no such user")]
    UnknownUser,
    /// Another user holds the username.
    #[error("this username is taken")]
    UsernameTaken,
}

impl DomainError for ChangeDetailsError {
    fn code(&self) -> &'static str {
        match self {
            ChangeDetailsError::UnknownUser => "user_not_found",
            ChangeDetailsError::UsernameTaken => "username_taken",
        }
    }

    fn rejection(&self) -> Rejection {
        match self {
            ChangeDetailsError::UnknownUser => Rejection::NotFound,
            ChangeDetailsError::UsernameTaken => Rejection::Conflict,
        }
    }
}

fairway_runtime::event_set! {
    /// Usernames and details.
    pub enum DetailsEvents {
        UserRegistered(UserRegistered),
        UserDetailsChanged(UserDetailsChanged),
    }
}

/// One user's current details.
#[derive(Debug, Clone, Default)]
pub struct Details {
    username: Option<Username>,
    bio: Option<String>,
    image: Option<String>,
}

/// Details of the users seen, and username holders.
#[derive(Debug, Default)]
pub struct Known {
    users: HashMap<UserId, Details>,
    holders: HashMap<Username, Option<UserId>>,
}

fn details_query(tag: String) -> Query {
    Query::item(
        QueryItem::new()
            .types([UserRegistered::TYPE, UserDetailsChanged::TYPE])
            .tag(tag),
    )
}

impl Command for ChangeDetails {
    type Events = DetailsEvents;
    type State = Known;
    type Error = ChangeDetailsError;
    type Deps = ();

    fn query(&self) -> Query {
        details_query(user_tag(&self.user_id))
    }

    fn more_reads(&self) -> Vec<Read> {
        self.username
            .iter()
            .map(|u| Read::new(details_query(username_tag(u))))
            .collect()
    }

    fn evolve(k: &mut Known, e: &Sequenced<DetailsEvents>) {
        match &e.event {
            DetailsEvents::UserRegistered(r) => {
                k.users.insert(
                    r.user_id.clone(),
                    Details {
                        username: Some(r.username.clone()),
                        ..Details::default()
                    },
                );
                k.holders
                    .insert(r.username.clone(), Some(r.user_id.clone()));
            }
            DetailsEvents::UserDetailsChanged(d) => {
                let user = k.users.entry(d.user_id.clone()).or_default();
                if let Some(name) = &d.username {
                    user.username = Some(name.clone());
                    k.holders.insert(name.clone(), Some(d.user_id.clone()));
                }
                if let Some(old) = &d.previous_username {
                    k.holders.entry(old.clone()).and_modify(|h| {
                        if h.as_ref() == Some(&d.user_id) {
                            *h = None;
                        }
                    });
                }
                if let Some(bio) = &d.bio {
                    user.bio = bio.clone();
                }
                if let Some(image) = &d.image {
                    user.image = image.clone();
                }
            }
        }
    }

    fn decide(&self, k: &Known, _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, ChangeDetailsError> {
        let Some(current) = k.users.get(&self.user_id) else {
            return Err(ChangeDetailsError::UnknownUser);
        };
        let mut change = UserDetailsChanged {
            user_id: self.user_id.clone(),
            username: None,
            previous_username: None,
            bio: self.bio.clone().filter(|b| *b != current.bio),
            image: self.image.clone().filter(|i| *i != current.image),
        };
        if let Some(name) = &self.username
            && current.username.as_ref() != Some(name)
        {
            if let Some(Some(holder)) = k.holders.get(name)
                && *holder != self.user_id
            {
                return Err(ChangeDetailsError::UsernameTaken);
            }
            change.username = Some(name.clone());
            change.previous_username = current.username.clone();
        }
        if change.username.is_none() && change.bio.is_none() && change.image.is_none() {
            return Ok(vec![]);
        }
        Ok(vec![change.into()])
    }
}

/// The request body: every field optional; `null` clears `bio` or `image`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DetailsBody {
    /// A new username.
    #[serde(default)]
    pub username: Option<String>,
    /// A new bio, or `null`.
    #[serde(default, deserialize_with = "double_option")]
    pub bio: Option<Option<String>>,
    /// A new image link, or `null`.
    #[serde(default, deserialize_with = "double_option")]
    pub image: Option<Option<String>>,
}

async fn change_details(
    State(rt): State<Runtime>,
    AuthUser(user_id): AuthUser,
    JsonBody(body): JsonBody<DetailsBody>,
) -> Result<NoContent, ApiError> {
    let username = body
        .username
        .as_deref()
        .map(Username::parse)
        .transpose()
        .map_err(|e| ApiError::bad_field("username", e))?;
    if let Some(Some(bio)) = &body.bio {
        check_bio(bio).map_err(|e| ApiError::bad_field("bio", e))?;
    }
    if let Some(Some(image)) = &body.image {
        check_image(image).map_err(|e| ApiError::bad_field("image", e))?;
    }
    let cmd = ChangeDetails {
        user_id,
        username,
        bio: body.bio,
        image: body.image,
    };
    rt.execute(&cmd, &()).await?;
    Ok(NoContent)
}

/// The module: `PATCH /api/user/details`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "users-change-details")
        .describe("Change one's username (unique), bio or image")
        .patch("/api/user/details", change_details)
        .command::<ChangeDetails>()
        .appends::<UserDetailsChanged>()
}
