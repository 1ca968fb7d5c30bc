use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The largest id we hand out: every JSON reader, JavaScript included, holds integers up to
/// 2^53 - 1 exactly, and the client's ids travel as JSON numbers.
pub const MAX_ID: i64 = (1 << 53) - 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be an integer")]
    NotAnInteger,
    #[error("must be between 1 and {MAX_ID}")]
    OutOfRange,
}

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(#[schemars(range(min = 1, max = MAX_ID))] i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = IdError;

            fn try_from(value: i64) -> Result<Self, Self::Error> {
                if (1..=MAX_ID).contains(&value) {
                    Ok(Self(value))
                } else {
                    Err(IdError::OutOfRange)
                }
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let value: i64 = s.trim().parse().map_err(|_| IdError::NotAnInteger)?;
                Self::try_from(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// The id of a user: positive and below 2^53.
    UserId
);
id!(
    /// The id of a published video.
    VideoId
);
id!(
    /// The id of a comment.
    CommentId
);
id!(
    /// The id of a chat message.
    MessageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positive_ids_below_two_to_the_53() {
        assert_eq!("42".parse::<UserId>().unwrap().get(), 42);
        assert_eq!(MAX_ID.to_string().parse::<UserId>().unwrap().get(), MAX_ID);
    }

    #[test]
    fn refuses_what_is_not_an_id() {
        assert_eq!("abc".parse::<UserId>(), Err(IdError::NotAnInteger));
        assert_eq!("".parse::<UserId>(), Err(IdError::NotAnInteger));
        assert_eq!("1.5".parse::<UserId>(), Err(IdError::NotAnInteger));
        assert_eq!("0".parse::<UserId>(), Err(IdError::OutOfRange));
        assert_eq!("-3".parse::<UserId>(), Err(IdError::OutOfRange));
        assert_eq!(
            (MAX_ID + 1).to_string().parse::<UserId>(),
            Err(IdError::OutOfRange)
        );
        assert_eq!(
            "99999999999999999999".parse::<UserId>(),
            Err(IdError::NotAnInteger)
        );
    }
}
