//! Pattern: **view** (live). Slice: users — the current user.
//!
//! `GET /api/user` with `Authorization: Token <token>` answers 200
//! `{"email","username","bio","image"}` (`bio` and `image` are `null` until set), folded on
//! each request from the user's events, so it always reflects the latest change. No, malformed,
//! forged, expired or revoked token (issued before the user's last password change, or naming
//! a user that does not exist): 401 `unauthorized`.
//!
//! Given/when/then:
//!
//! ```
//! use users_events::{Email, UserDetailsChanged, UserId, UserRegistered, Username};
//! use users_current_user::{Profile, UserProfile};
//! use fairway_runtime::testing::given;
//! let u1 = UserId::parse("u1")?;
//! // Given ann registered and set a bio, then her profile shows it.
//! given([UserRegistered { user_id: u1.clone(), username: Username::parse("ann")?,
//!     email: Email::parse("a@x.io")?, password_hash: "h".into(), registered_at_ms: 0 }])
//!     .and(UserDetailsChanged { user_id: u1.clone(), username: None, previous_username: None,
//!         bio: Some(Some("hi".into())), image: None })
//!     .live(UserProfile { user_id: u1 })
//!     .then(Some(Profile { email: Email::parse("a@x.io")?, username: Username::parse("ann")?,
//!         bio: Some("hi".into()), image: None }));
//! # Ok::<(), users_events::ValueError>(())
//! ```

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dcb_core::{Query, QueryItem};
use fairway_runtime::http::ApiError;
use fairway_runtime::{DomainEvent, LiveView, Module, ModuleKind, Runtime, Sequenced};
use schemars::JsonSchema;
use serde::Serialize;
use users_events::{
    AuthUser, Email, UserDetailsChanged, UserEmailChanged, UserId, UserRegistered, Username,
    user_tag,
};

fairway_runtime::event_set! {
    /// A user's profile events.
    pub enum ProfileEvents {
        UserRegistered(UserRegistered),
        UserEmailChanged(UserEmailChanged),
        UserDetailsChanged(UserDetailsChanged),
    }
}

/// Live: one user's profile.
#[derive(Debug, Clone)]
pub struct UserProfile {
    /// The user.
    pub user_id: UserId,
}

/// What `GET /api/user` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Profile {
    /// The current email.
    #[schemars(with = "String")]
    pub email: Email,
    /// The current username.
    #[schemars(with = "String")]
    pub username: Username,
    /// The bio, when set.
    pub bio: Option<String>,
    /// The image link, when set.
    pub image: Option<String>,
}

impl LiveView for UserProfile {
    type Events = ProfileEvents;
    type State = Option<Profile>;

    fn query(&self) -> Query {
        Query::item(
            QueryItem::new()
                .types([
                    UserRegistered::TYPE,
                    UserEmailChanged::TYPE,
                    UserDetailsChanged::TYPE,
                ])
                .tag(user_tag(&self.user_id)),
        )
    }

    fn evolve(state: &mut Option<Profile>, e: &Sequenced<ProfileEvents>) {
        match (&e.event, state.as_mut()) {
            (ProfileEvents::UserRegistered(r), _) => {
                *state = Some(Profile {
                    email: r.email.clone(),
                    username: r.username.clone(),
                    bio: None,
                    image: None,
                })
            }
            (ProfileEvents::UserEmailChanged(c), Some(p)) => p.email = c.email.clone(),
            (ProfileEvents::UserDetailsChanged(d), Some(p)) => {
                if let Some(u) = &d.username {
                    p.username = u.clone();
                }
                if let Some(b) = &d.bio {
                    p.bio = b.clone();
                }
                if let Some(i) = &d.image {
                    p.image = i.clone();
                }
            }
            (_, None) => {}
        }
    }
}

async fn current_user(
    State(rt): State<Runtime>,
    AuthUser(user_id): AuthUser,
) -> Result<Json<Profile>, ApiError> {
    rt.live(&UserProfile { user_id })
        .await?
        .state
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "no such user"))
}

/// The module: `GET /api/user`.
pub fn module() -> Module {
    Module::new(ModuleKind::View, "users-current-user")
        .describe("The authenticated user's email, username, bio and image")
        .get("/api/user", current_user)
        .reads::<ProfileEvents>()
}
