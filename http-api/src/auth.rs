//! Tokens (JWT, HS256) and password hashes (argon2id).

use std::sync::Arc;
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
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use infra::settings::{AuthSettings, PasswordSettings};

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

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordCheckError {
    /// Every hashing slot stayed taken for the whole wait.
    #[error("every password check is taken; waited {waited:?}")]
    Busy { waited: Duration },
    #[error("the password check did not finish")]
    Interrupted,
}

/// Whom a password check is for. A flood of guesses must not leave honest people "busy":
/// a quarter of the hashing slots is kept for sign-ups and for logins whose name and address
/// have no recent failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A sign-up, or a login from an address with no recent wrong password for that name.
    Clear,
    /// A login whose name and address failed recently: the shared slots only.
    Suspect,
}

/// Argon2 costs tens of milliseconds of CPU and 19 MiB of memory a hash, by design. Run
/// without a bound, a burst of anonymous sign-ups takes every core and gigabytes of memory;
/// so at most `at_once` hashes run together (one per core by default), and a request that
/// cannot get a slot within `wait` is turned away as busy rather than queued for ever. Of the
/// slots, a quarter (rounded up, none of a single one) is kept for checks in
/// [`Standing::Clear`].
///
/// The hashes run on threads of their own, as many as the slots: on tokio's blocking pool they
/// would queue behind file writes of uploads, past any wait.
#[derive(Clone)]
pub struct PasswordChecks {
    shared: Arc<Semaphore>,
    kept: Arc<Semaphore>,
    wait: Duration,
    hashers: Arc<rayon::ThreadPool>,
}

impl PasswordChecks {
    pub fn new(settings: &PasswordSettings) -> Result<Self, rayon::ThreadPoolBuildError> {
        let at_once = settings.password_hashes_at_once();
        let kept = if at_once > 1 { at_once.div_ceil(4) } else { 0 };
        let hashers = rayon::ThreadPoolBuilder::new()
            .num_threads(at_once)
            .thread_name(|i| format!("password-hash-{i}"))
            // rayon aborts the process on a panic in a job by default: one request's check is
            // lost instead (its sender dropped, the request answered with an internal error).
            .panic_handler(|_| tracing::error!("a password check panicked"))
            .build()?;
        Ok(Self {
            shared: Arc::new(Semaphore::new(at_once - kept)),
            kept: Arc::new(Semaphore::new(kept)),
            wait: settings.password_hash_wait(),
            hashers: Arc::new(hashers),
        })
    }

    /// Hashes a new password (a sign-up's: in [`Standing::Clear`]).
    pub async fn hash(&self, password: Password) -> Result<PasswordHash, PasswordCheckError> {
        self.run(Standing::Clear, move || hash_password(&password))
            .await
    }

    /// Checks a password against the hash of an account, or, for a name nobody holds, spends
    /// the same time so that the answer does not tell which names exist.
    pub async fn verify(
        &self,
        password: Password,
        hash: Option<PasswordHash>,
        standing: Standing,
    ) -> Result<bool, PasswordCheckError> {
        self.run(standing, move || match hash {
            Some(hash) => verify_password(&password, &hash),
            None => {
                verify_against_nothing(&password);
                false
            }
        })
        .await
    }

    /// A slot for a check in `standing`: a shared one, or for a clear check whichever of a
    /// shared and a kept one frees first.
    async fn slot(&self, standing: Standing) -> OwnedSemaphorePermit {
        let shared = self.shared.clone().acquire_owned();
        let permit = match standing {
            Standing::Suspect => shared.await,
            Standing::Clear => tokio::select! {
                permit = shared => permit,
                permit = self.kept.clone().acquire_owned() => permit,
            },
        };
        permit.expect("the semaphores are never closed")
    }

    async fn run<T: Send + 'static>(
        &self,
        standing: Standing,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordCheckError> {
        let slot = tokio::time::timeout(self.wait, self.slot(standing))
            .await
            .map_err(|_| PasswordCheckError::Busy { waited: self.wait })?;
        // A request given up meanwhile (the client went away) leaves its hash to finish, and
        // the slot taken until then: the CPU is spent either way.
        let (done, result) = oneshot::channel();
        let span = tracing::Span::current();
        self.hashers.spawn(move || {
            let checked = span.in_scope(work);
            drop(slot);
            let _unwanted = done.send(checked);
        });
        result.await.map_err(|_| PasswordCheckError::Interrupted)
    }
}

/// Hashes a password with argon2id and a fresh salt. Takes tens of milliseconds of CPU: call
/// it off the async executor, through [`PasswordChecks`].
fn hash_password(password: &Password) -> PasswordHash {
    let salt = SaltString::generate(&mut OsRng);
    let phc = Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string();
    PasswordHash::new(phc)
}

/// Checks a password against a stored hash. As slow as hashing, by design.
fn verify_password(password: &Password, hash: &PasswordHash) -> bool {
    match argon2::PasswordHash::new(hash.as_str()) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the time of one password check, so that a login with an unknown name takes as long
/// as one with a wrong password and does not tell which names exist.
fn verify_against_nothing(password: &Password) {
    static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| {
        hash_password(&Password::parse("not a real password").expect("a valid password"))
    });
    let _ = verify_password(password, hash);
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::settings::secret;

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

    #[tokio::test]
    async fn a_quarter_of_the_hashing_slots_is_kept_for_clear_checks() {
        let two = checks(2, 1);
        let _guess = two.slot(Standing::Suspect).await;
        // The shared slot is taken: another suspect check waits, a clear one does not.
        let waited = Duration::from_millis(20);
        assert!(
            tokio::time::timeout(waited, two.slot(Standing::Suspect))
                .await
                .is_err(),
            "a suspect check took the kept slot"
        );
        let _sign_up = tokio::time::timeout(waited, two.slot(Standing::Clear))
            .await
            .expect("a clear check has a slot kept for it");

        // A single slot is shared by all.
        drop(checks(1, 1).slot(Standing::Suspect).await);
    }

    #[test]
    fn passwords_are_hashed_with_argon2id_and_checked() {
        let password = Password::parse("correct horse").unwrap();
        let hash = hash_password(&password);
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert!(verify_password(&password, &hash));
        assert!(!verify_password(&Password::parse("wrong").unwrap(), &hash));
    }

    fn checks(at_once: usize, wait_ms: u64) -> PasswordChecks {
        PasswordChecks::new(&PasswordSettings {
            password_hashes_at_once: Some(at_once),
            password_hash_wait_ms: wait_ms,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_check_that_cannot_get_a_slot_in_time_is_busy() {
        let checks = checks(1, 50);
        // The only slot is taken for longer than the wait.
        let held = checks.shared.clone().acquire_owned().await.unwrap();
        let password = Password::parse("pw").unwrap();
        let refused = checks.hash(password.clone()).await;
        assert!(matches!(refused, Err(PasswordCheckError::Busy { .. })));
        drop(held);
        let hash = checks.hash(password.clone()).await.unwrap();
        let clear = Standing::Clear;
        assert!(checks
            .verify(password.clone(), Some(hash), clear)
            .await
            .unwrap());
        assert!(!checks.verify(password, None, clear).await.unwrap());
        // Every slot is given back.
        assert_eq!(checks.shared.available_permits(), 1);
    }
}
