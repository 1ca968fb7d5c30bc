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
    /// NUL, escape sequences and the like: invisible, and some break what stores or shows
    /// the text (Postgres refuses NUL in JSON).
    #[error("must not contain control characters ({0:?})")]
    ControlCharacter(char),
    /// Right-to-left overrides and isolates make a text read differently from what it is.
    #[error("must not contain bidirectional overrides (U+{:04X})", *.0 as u32)]
    BidiOverride(char),
}

/// Whether line breaks are part of a text: a comment or a message, not a title.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    Allowed,
    Refused,
}

/// Embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): they reorder what
/// follows them on screen.
pub(crate) fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The first character a text may not hold, as the refusal to answer with.
fn refuse_invisible(value: &str, lines: Lines) -> Result<(), TextError> {
    for c in value.chars() {
        let line_break = c == '\n' || c == '\r';
        if c.is_control() && !(line_break && lines == Lines::Allowed) {
            return Err(TextError::ControlCharacter(c));
        }
        if is_bidi_override(c) {
            return Err(TextError::BidiOverride(c));
        }
    }
    Ok(())
}

macro_rules! text {
    ($(#[$doc:meta])* $name:ident, $max:expr, $lines:expr) => {
        $(#[$doc])*
        ///
        /// Deserialising does not check the limits: stored events keep the rules of their day.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            /// Trims surrounding white space, then refuses what is empty, too long, or holds
            /// control characters or bidirectional overrides.
            pub fn parse(value: &str) -> Result<Self, TextError> {
                let value = value.trim();
                if value.is_empty() {
                    return Err(TextError::Empty);
                }
                if value.chars().count() > Self::MAX_CHARS {
                    return Err(TextError::TooLong(Self::MAX_CHARS));
                }
                refuse_invisible(value, $lines)?;
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
    100,
    Lines::Refused
);
text!(
    /// The text of a comment.
    CommentText,
    500,
    Lines::Allowed
);
text!(
    /// The text of a chat message.
    MessageText,
    1000,
    Lines::Allowed
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

    #[test]
    fn control_characters_and_bidi_overrides_are_refused() {
        assert_eq!(
            CommentText::parse("a\0b"),
            Err(TextError::ControlCharacter('\0'))
        );
        assert_eq!(
            MessageText::parse("bell\u{7}"),
            Err(TextError::ControlCharacter('\u{7}'))
        );
        assert_eq!(
            MessageText::parse("x\u{1b}[31m"),
            Err(TextError::ControlCharacter('\u{1b}'))
        );
        assert_eq!(
            CommentText::parse("abc\u{202E}fdp.exe"),
            Err(TextError::BidiOverride('\u{202E}'))
        );
        assert_eq!(
            Title::parse("a\u{2066}b"),
            Err(TextError::BidiOverride('\u{2066}'))
        );
        assert_eq!(
            TextError::BidiOverride('\u{202E}').to_string(),
            "must not contain bidirectional overrides (U+202E)"
        );
    }

    #[test]
    fn comments_and_messages_keep_their_line_breaks_titles_do_not() {
        assert!(CommentText::parse("first\nsecond").is_ok());
        assert!(MessageText::parse("first\r\nsecond").is_ok());
        assert_eq!(
            Title::parse("first\nsecond"),
            Err(TextError::ControlCharacter('\n'))
        );
        // Emoji, Chinese and a zero-width joiner are text, not control characters.
        assert!(MessageText::parse("你好 👩\u{200D}💻").is_ok());
    }
}
