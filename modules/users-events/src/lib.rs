//! `users-events`: the events of the users context (registration, email, password and details
//! changes, the welcome email), their tags, validated values (ids, emails, usernames,
//! passwords), the email-availability rule, password hashing behind a bounded queue, login
//! throttling, and the session tokens (HS256 JWTs carrying a credential version) every
//! `users-*` module verifies.
//!
//! Layer: a context's shared events crate, above `fairway-runtime`. It must not depend on any
//! module, on a backend, or on anything of another context. It is the only code the users
//! modules share.
//!
//! Tags: every event carries `user:<id>`; registration also `username:<name>`,
//! `email:<address>` and `email-key:<skeleton>` (the UTS #39 confusable skeleton that email
//! uniqueness goes by); an email change carries both the previous and the new `email:` and
//! `email-key:` tags, a username change both `username:` tags, so "who holds this email (or a
//! lookalike) / username" is one query ([`email_query`]). Events written before `email-key:`
//! existed are found by their exact `email:` tag.

pub mod auth;
pub mod credentials;
mod events;
pub mod hash_pool;
pub mod password;
pub mod throttle;
pub mod token;
mod values;

pub use auth::AuthUser;
pub use events::{
    EmailEvent, EmailUnavailable, EmailUse, UserDetailsChanged, UserEmailChanged,
    UserPasswordChanged, UserRegistered, WelcomeEmailSent, double_option, email_key_tag,
    email_query, email_tag, email_use, millis, user_tag, username_tag,
};
pub use throttle::ClientAddr;
pub use values::{
    Email, EmailKey, MAX_BIO_LEN, MAX_IMAGE_LEN, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, Password,
    RELEASE_WINDOW, UserId, Username, ValueError, check_bio, check_image, check_password_len,
    is_invisible,
};
