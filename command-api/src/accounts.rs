//! Registration and login: the `account` aggregate (one per name) holds the credentials and
//! decides who gets a name; the `user` aggregate (one per id) holds the profile.

use cqrs_es::AggregateError;
use domain::account::{Account, AccountCommand, AccountError, Password};
use domain::user::{User, UserCommand, UserName};
use domain::UserId;
use http_api::auth::{PasswordCheckError, PasswordChecks, Standing, Tokens};
use infra::event_store::{self, EventStore};
use postgres_es::PostgresCqrs;

use crate::writes::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("the user name is already taken")]
    NameTaken,
    #[error("wrong user name or password")]
    WrongCredentials,
    #[error("event store: {0}")]
    Store(#[from] WriteError),
    #[error("password check: {0}")]
    PasswordCheck(#[from] PasswordCheckError),
}

impl<T: std::error::Error + Send + Sync + 'static> From<AggregateError<T>> for AccountsError {
    fn from(error: AggregateError<T>) -> Self {
        Self::Store(WriteError::of_store(error))
    }
}

/// A logged-in user: what register and login answer with.
#[derive(Debug)]
pub struct Session {
    pub user_id: UserId,
    pub token: String,
}

pub struct Accounts {
    store: EventStore,
    accounts: PostgresCqrs<Account>,
    users: PostgresCqrs<User>,
    tokens: Tokens,
    passwords: PasswordChecks,
}

impl Accounts {
    pub fn new(store: EventStore, tokens: Tokens, passwords: PasswordChecks) -> Self {
        Self {
            accounts: store.cqrs(()),
            users: store.cqrs(()),
            store,
            tokens,
            passwords,
        }
    }

    pub async fn register(
        &self,
        name: UserName,
        password: Password,
    ) -> Result<Session, AccountsError> {
        // Hashing costs tens of milliseconds of CPU: refuse a taken name before spending it.
        // The account aggregate still decides, in case of a race.
        let account: Account = self.store.load(name.as_str()).await?;
        if account.holder().is_some() {
            return Err(AccountsError::NameTaken);
        }
        let password_hash = self.passwords.hash(password).await?;
        let user_id = self.store.next_user_id().await.map_err(WriteError::from)?;

        let open = AccountCommand::Open {
            user_id,
            password_hash,
        };
        match event_store::record(&self.accounts, name.as_str(), open).await {
            Ok(()) => {}
            // A simultaneous registration of the same name committed first.
            Err(AggregateError::UserError(AccountError::NameTaken))
            | Err(AggregateError::AggregateConflict) => return Err(AccountsError::NameTaken),
            Err(error) => return Err(error.into()),
        }
        // Should the process die here, the name is taken but the profile is missing; the
        // first login creates it (see `login`).
        self.ensure_profile(user_id, name).await?;
        Ok(self.session(user_id))
    }

    /// Logs in with `name` as typed; `standing` says which password-check slots it may take.
    pub async fn login(
        &self,
        name: UserName,
        password: Password,
        standing: Standing,
    ) -> Result<Session, AccountsError> {
        let (name, account) = self.account_of(name).await?;
        let holder = account.holder().map(|(user_id, _)| user_id);
        // A name nobody holds costs as much as a wrong password (no hash to check against),
        // so the answer does not tell which names exist.
        let hash = account.holder().map(|(_, hash)| hash.clone());
        let matches = self.passwords.verify(password, hash, standing).await?;
        let (Some(user_id), true) = (holder, matches) else {
            return Err(AccountsError::WrongCredentials);
        };
        self.ensure_profile(user_id, name).await?;
        Ok(self.session(user_id))
    }

    /// The account a login names: the one held under the name as typed (every account made
    /// before names were kept composed logs in with its own spelling), else the one under its
    /// composed form (NFC, as sign-ups keep names), with the name it is held under.
    async fn account_of(&self, typed: UserName) -> Result<(UserName, Account), AccountsError> {
        let account: Account = self.store.load(typed.as_str()).await?;
        if account.holder().is_some() {
            return Ok((typed, account));
        }
        match typed.composed() {
            Some(composed) => {
                let account = self.store.load(composed.as_str()).await?;
                Ok((composed, account))
            }
            None => Ok((typed, account)),
        }
    }

    /// Creates the user's profile unless it exists: completes a registration interrupted
    /// between its two commands.
    async fn ensure_profile(&self, user_id: UserId, name: UserName) -> Result<(), AccountsError> {
        let id = user_id.to_string();
        let user: User = self.store.load(&id).await?;
        if !user.is_registered() {
            event_store::record(&self.users, &id, UserCommand::Register { name }).await?;
        }
        Ok(())
    }

    fn session(&self, user_id: UserId) -> Session {
        Session {
            user_id,
            token: self.tokens.issue(user_id),
        }
    }
}
