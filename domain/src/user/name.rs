use std::fmt;

use serde::{Deserialize, Serialize};

/// The client allows names of 1 to 32 characters.
pub const MAX_NAME_CHARS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserNameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must not start or end with white space")]
    SurroundingWhitespace,
    /// A name is shown beside others' words: one must not make them read backwards.
    #[error("must not contain bidirectional overrides")]
    BidiOverride,
}

/// A user name as the client shows it: 1 to 32 printable characters, kept exactly as typed
/// (case included), since it is also the login.
///
/// Deserialising does not check the rules: names in stored events were valid under the rules
/// of their day, and a later, stricter rule must not make history unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct UserName(String);

impl UserName {
    pub fn parse(value: &str) -> Result<Self, UserNameError> {
        if value.is_empty() {
            return Err(UserNameError::Empty);
        }
        if value.chars().count() > MAX_NAME_CHARS {
            return Err(UserNameError::TooLong);
        }
        if value.chars().any(char::is_control) {
            return Err(UserNameError::ControlCharacter);
        }
        if value.trim() != value {
            return Err(UserNameError::SurroundingWhitespace);
        }
        if value.chars().any(crate::text::is_bidi_override) {
            return Err(UserNameError::BidiOverride);
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bidirectional_overrides() {
        assert_eq!(
            UserName::parse("admin\u{202E}nimda"),
            Err(UserNameError::BidiOverride)
        );
        assert_eq!(
            UserName::parse("a\u{2067}b"),
            Err(UserNameError::BidiOverride)
        );
    }

    #[test]
    fn accepts_names_of_one_to_thirty_two_characters() {
        assert!(UserName::parse("a").is_ok());
        assert!(UserName::parse(&"名".repeat(32)).is_ok());
        assert!(UserName::parse("Alice Liddell").is_ok());
    }

    #[test]
    fn refuses_empty_long_and_unprintable_names() {
        assert_eq!(UserName::parse(""), Err(UserNameError::Empty));
        assert_eq!(
            UserName::parse(&"x".repeat(33)),
            Err(UserNameError::TooLong)
        );
        assert_eq!(
            UserName::parse("a\u{0}b"),
            Err(UserNameError::ControlCharacter)
        );
        assert_eq!(
            UserName::parse("line\nbreak"),
            Err(UserNameError::ControlCharacter)
        );
        assert_eq!(
            UserName::parse(" bob"),
            Err(UserNameError::SurroundingWhitespace)
        );
        assert_eq!(
            UserName::parse("   "),
            Err(UserNameError::SurroundingWhitespace)
        );
    }
}
