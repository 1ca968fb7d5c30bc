//! Free text the client sends (titles, comments, messages), parsed into types that hold
//! their limits.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
}

macro_rules! text {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        ///
        /// Deserialising does not check the limits: stored events keep the rules of their day.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            /// Trims surrounding white space, then refuses what is empty or too long.
            pub fn parse(value: &str) -> Result<Self, TextError> {
                let value = value.trim();
                if value.is_empty() {
                    return Err(TextError::Empty);
                }
                if value.chars().count() > Self::MAX_CHARS {
                    return Err(TextError::TooLong(Self::MAX_CHARS));
                }
                Ok(Self(value.to_owned()))
            }

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

text!(
    /// The title of a video.
    Title,
    100
);
text!(
    /// The text of a comment.
    CommentText,
    500
);
text!(
    /// The text of a chat message.
    MessageText,
    1000
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(Title::parse("  cats  ").unwrap().as_str(), "cats");
        assert_eq!(Title::parse("   "), Err(TextError::Empty));
        assert_eq!(Title::parse(&"x".repeat(101)), Err(TextError::TooLong(100)));
        assert!(Title::parse(&"字".repeat(100)).is_ok());
    }
}
