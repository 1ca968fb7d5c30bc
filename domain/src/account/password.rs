use std::fmt;

use serde::{Deserialize, Serialize};

/// The client allows passwords of 1 to 32 characters.
pub const MAX_PASSWORD_CHARS: usize = 32;
/// The shortest password a new account may have: the client's 1 would let one guess in a few
/// hundred find it. Narrower than the contract's 1..=32, for sign-ups only: accounts made
/// before still log in with theirs.
pub const MIN_NEW_PASSWORD_CHARS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
    #[error("must be at least {MIN_NEW_PASSWORD_CHARS} characters")]
    TooShort,
}

/// A password as typed. It never leaves the request that carries it: only its hash is kept.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(value: &str) -> Result<Self, PasswordError> {
        if value.is_empty() {
            return Err(PasswordError::Empty);
        }
        if value.chars().count() > MAX_PASSWORD_CHARS {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(value.to_owned()))
    }

    /// A password for a new account: as [`Password::parse`], and at least
    /// [`MIN_NEW_PASSWORD_CHARS`] long.
    pub fn parse_new(value: &str) -> Result<Self, PasswordError> {
        let password = Self::parse(value)?;
        if value.chars().count() < MIN_NEW_PASSWORD_CHARS {
            return Err(PasswordError::TooShort);
        }
        Ok(password)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A password hash in PHC string form (`$argon2id$v=19$...`). Hashing and checking are done by
/// the infrastructure; the domain only keeps the hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_one_to_thirty_two_characters() {
        assert!(Password::parse("x").is_ok());
        assert!(Password::parse(&"密".repeat(32)).is_ok());
        assert_eq!(Password::parse("").unwrap_err(), PasswordError::Empty);
        assert_eq!(
            Password::parse(&"x".repeat(33)).unwrap_err(),
            PasswordError::TooLong
        );
    }

    #[test]
    fn new_passwords_are_at_least_six_characters_logins_take_any() {
        assert_eq!(
            Password::parse_new("12345").unwrap_err(),
            PasswordError::TooShort
        );
        assert_eq!(
            PasswordError::TooShort.to_string(),
            "must be at least 6 characters"
        );
        assert!(Password::parse_new("123456").is_ok());
        assert!(Password::parse_new("密码密码密码").is_ok());
        assert_eq!(Password::parse_new("").unwrap_err(), PasswordError::Empty);
        assert_eq!(
            Password::parse_new(&"x".repeat(33)).unwrap_err(),
            PasswordError::TooLong
        );
        assert!(
            Password::parse("12345").is_ok(),
            "an older account's password"
        );
    }

    #[test]
    fn never_prints_the_secret() {
        let password = Password::parse("hunter2").unwrap();
        assert!(!format!("{password:?}").contains("hunter2"));
        let hash = PasswordHash::new("$argon2id$secret".to_owned());
        assert!(!format!("{hash:?}").contains("secret"));
    }
}
