use std::borrow::Cow;
use std::fmt;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{BinaryProperty, DefaultIgnorableCodePoint, ExtendedPictographic};
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
    /// Zero-width spaces, joiners outside emoji, byte order marks and the like: two names
    /// differing only by them look the same.
    #[error("must not contain invisible characters (U+{:04X})", *.0 as u32)]
    Invisible(char),
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
    /// A new name, for a sign-up: in Unicode's composed form (NFC), so that a name typed with
    /// combining accents and one typed with precomposed letters are the same name; without
    /// invisible characters (Unicode's default ignorable code points), so that no two names
    /// look alike; and under the rules of [`UserName::typed`].
    pub fn parse(value: &str) -> Result<Self, UserNameError> {
        let composed = ComposingNormalizerBorrowed::new_nfc().normalize(value);
        let name = Self::typed(&composed)?;
        if let Some(invisible) = first_invisible(&name.0) {
            return Err(UserNameError::Invisible(invisible));
        }
        Ok(name)
    }

    /// A name as typed at login, exactly: only the rules every name has always had, so that
    /// a name made before a stricter rule still logs in with its spelling.
    pub fn typed(value: &str) -> Result<Self, UserNameError> {
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

    /// The name in the form new names are kept in (NFC), when that is another spelling: the
    /// account a login with this spelling is looked up under when none holds it as typed.
    pub fn composed(&self) -> Option<UserName> {
        match ComposingNormalizerBorrowed::new_nfc().normalize(&self.0) {
            Cow::Borrowed(_) => None,
            Cow::Owned(composed) => Some(Self(composed)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The first default ignorable code point of `name`, but for what emoji are made of: a
/// zero-width joiner between two pictographs (👩‍💻), and the emoji presentation selector
/// (U+FE0F) after one (❤️).
fn first_invisible(name: &str) -> Option<char> {
    const JOINER: char = '\u{200D}';
    const EMOJI_PRESENTATION: char = '\u{FE0F}';
    let chars: Vec<char> = name.chars().collect();
    let pictograph = |at: Option<&char>| at.is_some_and(|&c| ExtendedPictographic::for_char(c));
    chars.iter().enumerate().find_map(|(at, &c)| {
        if !DefaultIgnorableCodePoint::for_char(c) {
            return None;
        }
        let before = at.checked_sub(1).and_then(|at| chars.get(at));
        let part_of_emoji = match c {
            EMOJI_PRESENTATION => pictograph(before),
            JOINER => {
                // A presentation selector may stand between the pictograph and the joiner.
                let before = match before {
                    Some(&EMOJI_PRESENTATION) => at.checked_sub(2).and_then(|at| chars.get(at)),
                    other => other,
                };
                pictograph(before) && pictograph(chars.get(at + 1))
            }
            _ => false,
        };
        (!part_of_emoji).then_some(c)
    })
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
    fn new_names_refuse_invisible_characters_but_not_emoji() {
        for invisible in ['\u{200B}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{200D}'] {
            assert_eq!(
                UserName::parse(&format!("ann{invisible}a")),
                Err(UserNameError::Invisible(invisible))
            );
        }
        assert_eq!(
            UserNameError::Invisible('\u{200B}').to_string(),
            "must not contain invisible characters (U+200B)"
        );
        // A joiner inside an emoji sequence, and emoji presentation, are part of the emoji.
        assert!(UserName::parse("coder 👩\u{200D}💻").is_ok());
        assert!(UserName::parse("love ❤\u{FE0F}").is_ok());
        assert!(UserName::parse("❤\u{FE0F}\u{200D}🔥").is_ok());
        assert!(
            UserName::parse("a\u{200D}💻").is_err(),
            "a joiner after a letter"
        );
    }

    #[test]
    fn names_are_compared_in_composed_form() {
        let decomposed = "Zoe\u{0301}";
        let composed = "Zo\u{00E9}";
        assert_eq!(UserName::parse(decomposed).unwrap().as_str(), composed);
        assert_eq!(UserName::parse(composed).unwrap().as_str(), composed);
        // As typed at login, a name keeps its spelling; its composed form is where a new
        // account of that spelling would be.
        let typed = UserName::typed(decomposed).unwrap();
        assert_eq!(typed.as_str(), decomposed);
        assert_eq!(typed.composed().unwrap().as_str(), composed);
        assert_eq!(UserName::typed(composed).unwrap().composed(), None);
        // An older name with an invisible character still logs in as typed.
        assert!(UserName::typed("ann\u{200B}").is_ok());
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
