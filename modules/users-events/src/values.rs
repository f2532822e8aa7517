//! Validated values: ids, emails, usernames, passwords, bios and image links.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long an email released by one user stays reserved before another may take it.
pub const RELEASE_WINDOW: Duration = Duration::from_secs(72 * 3600);

/// The longest bio accepted (in characters).
pub const MAX_BIO_LEN: usize = 1000;

/// The longest image link accepted (in bytes).
pub const MAX_IMAGE_LEN: usize = 2048;

/// Why a value is not acceptable (the message names no field: the caller does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Empty.
    #[error("must not be empty")]
    Empty,
    /// Too long.
    #[error("must be at most {0} characters")]
    TooLong(usize),
    /// Too short.
    #[error("must be at least {0} characters")]
    TooShort(usize),
    /// A character outside the allowed set.
    #[error("may only contain {0}")]
    BadCharacter(&'static str),
    /// Not an email address.
    #[error("is not an email address")]
    NotAnEmail,
}

fn check_token(s: &str, max: usize) -> Result<(), ValueError> {
    if s.is_empty() {
        return Err(ValueError::Empty);
    }
    if s.chars().count() > max {
        return Err(ValueError::TooLong(max));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ValueError::BadCharacter(
            "letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

macro_rules! text_value {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value as text.
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

text_value! {
    /// A user's id (chosen by the client): 1 to 64 of `A-Z a-z 0-9 - _ .`.
    UserId
}

text_value! {
    /// A username: 1 to 32 of `A-Z a-z 0-9 - _ .`, compared exactly.
    Username
}

text_value! {
    /// An email address, trimmed and lower-cased (so uniqueness ignores case).
    Email
}

impl UserId {
    /// A validated id.
    pub fn parse(s: &str) -> Result<UserId, ValueError> {
        check_token(s, 64)?;
        Ok(UserId(s.to_owned()))
    }
}

impl Username {
    /// A validated username.
    pub fn parse(s: &str) -> Result<Username, ValueError> {
        check_token(s, 32)?;
        Ok(Username(s.to_owned()))
    }
}

impl Email {
    /// A validated, normalised address: one `@`, a non-empty local part, a domain with a dot,
    /// no whitespace, at most 254 characters.
    pub fn parse(s: &str) -> Result<Email, ValueError> {
        let s = s.trim().to_lowercase();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        if s.chars().count() > 254 {
            return Err(ValueError::TooLong(254));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(ValueError::NotAnEmail);
        };
        let ok = !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(ValueError::NotAnEmail);
        }
        Ok(Email(s))
    }
}

/// A plain-text password on its way to the hasher: 8 to 128 characters. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// A validated password.
    pub fn parse(s: &str) -> Result<Password, ValueError> {
        let n = s.chars().count();
        if n < 8 {
            return Err(ValueError::TooShort(8));
        }
        if n > 128 {
            return Err(ValueError::TooLong(128));
        }
        Ok(Password(s.to_owned()))
    }

    /// The plain text (for the hasher only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A bio: at most [`MAX_BIO_LEN`] characters, no control characters other than newlines.
pub fn check_bio(s: &str) -> Result<(), ValueError> {
    if s.chars().count() > MAX_BIO_LEN {
        return Err(ValueError::TooLong(MAX_BIO_LEN));
    }
    if s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ValueError::BadCharacter(
            "printable characters and newlines",
        ));
    }
    Ok(())
}

/// An image link: at most [`MAX_IMAGE_LEN`] bytes, `http://` or `https://`, no whitespace.
pub fn check_image(s: &str) -> Result<(), ValueError> {
    if s.len() > MAX_IMAGE_LEN {
        return Err(ValueError::TooLong(MAX_IMAGE_LEN));
    }
    if !(s.starts_with("https://") || s.starts_with("http://"))
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ValueError::BadCharacter("an http(s) link without spaces"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "", "ann", "ann@", "@x.io", "a@b", "a b@x.io", "a@@x.io", "a@x.", "a@.x",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Email::parse(&format!("{}@x.io", "a".repeat(260))),
            Err(ValueError::TooLong(254))
        );
    }

    #[test]
    fn ids_usernames_and_passwords_are_checked() {
        assert!(UserId::parse("u-1").is_ok());
        assert_eq!(UserId::parse(""), Err(ValueError::Empty));
        assert!(UserId::parse("a:b").is_err());
        assert!(Username::parse("ann.b").is_ok());
        assert!(Username::parse(&"x".repeat(33)).is_err());
        assert!(Username::parse("ann b").is_err());
        assert_eq!(
            Password::parse("short").unwrap_err(),
            ValueError::TooShort(8)
        );
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(!format!("{:?}", Password::parse("secret-pw").unwrap()).contains("secret"));
    }

    #[test]
    fn bios_and_images_are_checked() {
        assert!(check_bio("hello\nworld").is_ok());
        assert!(check_bio("a\u{7}").is_err());
        assert!(check_bio(&"x".repeat(MAX_BIO_LEN + 1)).is_err());
        assert!(check_image("https://x.io/a.png").is_ok());
        assert!(check_image("javascript:alert(1)").is_err());
        assert!(check_image("https://x.io/a b.png").is_err());
    }
}
