//! Validated values: ids, emails, usernames, passwords, bios and image links.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// How long an email released by one user stays reserved before another may take it.
pub const RELEASE_WINDOW: Duration = Duration::from_secs(72 * 3600);

/// The longest bio accepted (in characters).
pub const MAX_BIO_LEN: usize = 1000;

/// The longest image link accepted (in bytes).
pub const MAX_IMAGE_LEN: usize = 2048;

/// The longest password accepted, in bytes (UTF-8), checked before any hashing at registration,
/// login and password change.
pub const MAX_PASSWORD_BYTES: usize = 128;

/// The shortest new password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

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
    /// Longer than this many bytes.
    #[error("must be at most {0} bytes")]
    TooManyBytes(usize),
    /// An invisible, format or control character (its code point).
    #[error("must not contain invisible, format or control characters (found U+{0:04X})")]
    Invisible(u32),
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
    /// An email address: trimmed, NFKC-normalised and lower-cased. Uniqueness goes by its
    /// [`EmailKey`], so that lookalikes of a held address are taken too.
    Email
}

text_value! {
    /// The UTS #39 confusable skeleton of an [`Email`]: two addresses a reader could mistake for
    /// each other (fullwidth or Cyrillic lookalikes, `rn` for `m`, NFD for NFC) have the same
    /// key. Derived, never shown: uniqueness of emails is uniqueness of keys.
    EmailKey
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

/// Whether `c` is invisible or changes how text around it is shown: a control (`Cc`), a
/// format character (`Cf`: zero-width space and joiners, soft hyphen, byte-order mark,
/// bidirectional overrides, ...) or another default-ignorable code point (fillers, variation
/// selectors, the combining grapheme joiner).
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || c.general_category() == GeneralCategory::Format
        || matches!(
            c,
            '\u{34F}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

fn refuse_invisible(s: &str) -> Result<(), ValueError> {
    match s.chars().find(|&c| is_invisible(c)) {
        Some(c) => Err(ValueError::Invisible(u32::from(c))),
        None => Ok(()),
    }
}

impl Email {
    /// A validated, normalised address: invisible, format and control characters refused,
    /// then NFKC and lower case (so `ＡＮＮ@x.io` is `ann@x.io`); one `@`, a non-empty local
    /// part, a domain with a dot, no whitespace, at most 254 characters.
    pub fn parse(s: &str) -> Result<Email, ValueError> {
        let s = s.trim();
        refuse_invisible(s)?;
        let s: String = s.nfkc().collect::<String>().to_lowercase().nfkc().collect();
        refuse_invisible(&s)?;
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

    /// The confusable skeleton that uniqueness goes by.
    pub fn key(&self) -> EmailKey {
        EmailKey(unicode_security::skeleton(&self.0).collect())
    }
}

/// A plain-text password on its way to the hasher: at least [`MIN_PASSWORD_CHARS`]
/// characters, at most [`MAX_PASSWORD_BYTES`] bytes. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// A validated new password.
    pub fn parse(s: &str) -> Result<Password, ValueError> {
        check_password_len(s)?;
        if s.chars().count() < MIN_PASSWORD_CHARS {
            return Err(ValueError::TooShort(MIN_PASSWORD_CHARS));
        }
        Ok(Password(s.to_owned()))
    }

    /// A password to check against a stored hash (a login, the current password of a change):
    /// only the length cap applies, so a wrong short one is a wrong password, not a 400.
    pub fn candidate(s: &str) -> Result<Password, ValueError> {
        check_password_len(s)?;
        Ok(Password(s.to_owned()))
    }

    /// The plain text (for the hasher only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// At most [`MAX_PASSWORD_BYTES`] bytes: the cap every password meets before it is hashed.
pub fn check_password_len(s: &str) -> Result<(), ValueError> {
    if s.len() > MAX_PASSWORD_BYTES {
        return Err(ValueError::TooManyBytes(MAX_PASSWORD_BYTES));
    }
    Ok(())
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
    fn invisible_and_format_characters_are_refused_in_emails() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{AD}',
            '\u{FEFF}',
            '\u{202E}',
            '\u{2066}',
            '\u{2060}',
            '\u{7}',
            '\u{7F}',
            '\u{34F}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{E0041}',
        ] {
            for at in ["x{c}ann@x.io", "ann@x{c}.io", "ann@x.io{c}", "{c}ann@x.io"] {
                let email = at.replace("{c}", &c.to_string());
                assert_eq!(
                    Email::parse(&email),
                    Err(ValueError::Invisible(u32::from(c))),
                    "{email:?}"
                );
            }
        }
        // A control that is also whitespace is trimmed at the ends, refused inside.
        assert_eq!(Email::parse("ann@x.io\u{85}").unwrap().as_str(), "ann@x.io");
        assert_eq!(
            Email::parse("an\u{85}n@x.io"),
            Err(ValueError::Invisible(0x85))
        );
        // Arabic or Chinese letters are not invisible.
        assert!(Email::parse("\u{645}\u{62d}\u{645}\u{62f}@x.io").is_ok());
        assert!(Email::parse("\u{5f20}@x.io").is_ok());
    }

    #[test]
    fn lookalike_emails_share_a_key() {
        let key = |s: &str| Email::parse(s).unwrap().key();
        let ann = key("ann@example.com");
        for lookalike in [
            "\u{FF41}\u{FF4E}\u{FF4E}@example.com",
            "\u{FF21}NN@EXAMPLE.COM",
            "\u{430}nn@example.com",
            "ann@\u{435}\u{445}ample.com",
            "ann@exarnple.corn",
        ] {
            assert_eq!(key(lookalike), ann, "{lookalike:?}");
        }
        assert_eq!(key("jos\u{e9}@x.io"), key("jose\u{301}@x.io"));
        // NFKC turns compatibility forms into the address itself.
        assert_eq!(
            Email::parse("\u{FF41}nn@example.com").unwrap().as_str(),
            "ann@example.com"
        );
        assert_eq!(
            Email::parse("jose\u{301}@x.io").unwrap(),
            Email::parse("jos\u{e9}@x.io").unwrap()
        );
        // Different addresses, different keys.
        assert_ne!(key("bob@example.com"), ann);
        assert_ne!(key("anne@example.com"), ann);
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
        assert_eq!(
            Password::parse(&"x".repeat(129)).unwrap_err(),
            ValueError::TooManyBytes(128)
        );
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        // The cap is in bytes: 65 two-byte characters are too long.
        assert!(Password::parse(&"\u{e9}".repeat(65)).is_err());
        assert!(Password::parse(&"\u{e9}".repeat(64)).is_ok());
        assert!(Password::candidate("").is_ok());
        assert!(Password::candidate(&"x".repeat(60_000)).is_err());
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
