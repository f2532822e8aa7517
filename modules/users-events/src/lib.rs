//! `users-events`: the events of the users context (registration, email, password and details
//! changes, the welcome email), their tags, validated values (ids, emails, usernames,
//! passwords), the email-availability rule, password hashing and the signed tokens every
//! `users-*` module verifies.
//!
//! Layer: a context's shared events crate, above `fairway-runtime`. It must not depend on any
//! module, on a backend, or on anything of another context. It is the only code the users
//! modules share.
//!
//! Tags: every event carries `user:<id>`; registration also `username:<name>` and
//! `email:<address>`; an email change carries both the previous and the new `email:` tag, a
//! username change both `username:` tags, so "who holds this email / username" is one tag query.

pub mod auth;
mod events;
pub mod password;
pub mod token;
mod values;

pub use auth::AuthUser;
pub use events::{
    EmailEvent, EmailUnavailable, EmailUse, UserDetailsChanged, UserEmailChanged,
    UserPasswordChanged, UserRegistered, WelcomeEmailSent, double_option, email_tag, email_use,
    millis, user_tag, username_tag,
};
pub use values::{
    Email, MAX_BIO_LEN, MAX_IMAGE_LEN, Password, RELEASE_WINDOW, UserId, Username, ValueError,
    check_bio, check_image,
};
