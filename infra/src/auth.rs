//! Tokens (JWT, HS256) and password hashes (argon2id).

use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;
use domain::account::{Password, PasswordHash};
use domain::UserId;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::settings::AuthSettings;

/// HS256 keys shorter than the hash output are weak; refuse to start with one.
const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token has expired, log in again")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
}

#[derive(Debug, thiserror::Error)]
#[error("JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")]
pub struct WeakSecret;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// Issues and checks the tokens the client sends back as `token`.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    pub fn new(settings: &AuthSettings) -> Result<Self, WeakSecret> {
        let secret = settings.jwt_secret.expose_secret().as_bytes();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // Tokens are issued and checked by our own servers, so no clock skew to allow for;
        // an expired token is refused from its expiry on.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl: settings.token_ttl(),
        })
    }

    pub fn issue(&self, user: UserId) -> String {
        self.issue_at(user, Utc::now().timestamp())
    }

    /// Issues a token as if at `issued_at` (Unix seconds); tests use it to make expired ones.
    pub fn issue_at(&self, user: UserId, issued_at: i64) -> String {
        let claims = Claims {
            sub: user.to_string(),
            iat: issued_at,
            exp: issued_at.saturating_add(self.ttl.as_secs() as i64),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<UserId, TokenError> {
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(
                |error| match error.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                },
            )?;
        data.claims.sub.parse().map_err(|_| TokenError::Invalid)
    }
}

/// Hashes a password with argon2id and a fresh salt. Takes tens of milliseconds of CPU: call
/// it off the async executor.
pub fn hash_password(password: &Password) -> PasswordHash {
    let salt = SaltString::generate(&mut OsRng);
    let phc = Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string();
    PasswordHash::new(phc)
}

/// Checks a password against a stored hash. As slow as hashing, by design.
pub fn verify_password(password: &Password, hash: &PasswordHash) -> bool {
    match argon2::PasswordHash::new(hash.as_str()) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the time of one password check, so that a login with an unknown name takes as long
/// as one with a wrong password and does not tell which names exist.
pub fn verify_against_nothing(password: &Password) {
    static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| {
        hash_password(&Password::parse("not a real password").expect("a valid password"))
    });
    let _ = verify_password(password, hash);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::secret;

    fn tokens(ttl_secs: u64) -> Tokens {
        Tokens::new(&AuthSettings {
            jwt_secret: secret("0123456789abcdef0123456789abcdef"),
            token_ttl_secs: ttl_secs,
        })
        .unwrap()
    }

    fn user(id: i64) -> UserId {
        UserId::try_from(id).unwrap()
    }

    #[test]
    fn a_token_names_its_user() {
        let tokens = tokens(60);
        assert_eq!(tokens.verify(&tokens.issue(user(42))), Ok(user(42)));
    }

    #[test]
    fn expired_forged_and_garbled_tokens_are_refused() {
        let tokens = tokens(60);
        let expired = tokens.issue_at(user(1), Utc::now().timestamp() - 61);
        assert_eq!(tokens.verify(&expired), Err(TokenError::Expired));

        let other_key = Tokens::new(&AuthSettings {
            jwt_secret: secret("another secret that is long enough!!"),
            token_ttl_secs: 60,
        })
        .unwrap();
        assert_eq!(
            tokens.verify(&other_key.issue(user(1))),
            Err(TokenError::Invalid)
        );
        assert_eq!(tokens.verify("not-a-jwt"), Err(TokenError::Invalid));
        assert_eq!(tokens.verify(""), Err(TokenError::Invalid));
    }

    #[test]
    fn a_short_secret_is_refused() {
        let settings = AuthSettings {
            jwt_secret: secret("short"),
            token_ttl_secs: 60,
        };
        assert!(Tokens::new(&settings).is_err());
    }

    #[test]
    fn passwords_are_hashed_with_argon2id_and_checked() {
        let password = Password::parse("correct horse").unwrap();
        let hash = hash_password(&password);
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert!(verify_password(&password, &hash));
        assert!(!verify_password(&Password::parse("wrong").unwrap(), &hash));
    }
}
