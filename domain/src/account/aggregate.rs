use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{AccountCommand, AccountError, AccountEvent, PasswordHash};
use crate::UserId;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    holder: Option<Holder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    user_id: UserId,
    password_hash: PasswordHash,
}

impl Account {
    /// The user who holds this name, with the hash their password is checked against.
    pub fn holder(&self) -> Option<(UserId, &PasswordHash)> {
        self.holder
            .as_ref()
            .map(|holder| (holder.user_id, &holder.password_hash))
    }

    pub fn decide(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open {
                user_id,
                password_hash,
            } => match self.holder {
                Some(_) => Err(AccountError::NameTaken),
                None => Ok(vec![AccountEvent::AccountOpened {
                    user_id,
                    password_hash,
                }]),
            },
        }
    }
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        crate::record(self, sink, events).await
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AccountEvent::AccountOpened {
                user_id,
                password_hash,
            } => {
                self.holder = Some(Holder {
                    user_id,
                    password_hash,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> UserId {
        UserId::try_from(id).unwrap()
    }

    fn hash(phc: &str) -> PasswordHash {
        PasswordHash::new(phc.to_owned())
    }

    fn given(events: Vec<AccountEvent>) -> Account {
        let mut account = Account::default();
        events.into_iter().for_each(|event| account.apply(event));
        account
    }

    #[test]
    fn opening_a_free_name_gives_it_to_the_user() {
        let account = given(vec![]);
        let events = account
            .decide(AccountCommand::Open {
                user_id: user(7),
                password_hash: hash("h"),
            })
            .unwrap();
        assert_eq!(
            events,
            vec![AccountEvent::AccountOpened {
                user_id: user(7),
                password_hash: hash("h")
            }]
        );
        let opened = given(events);
        assert_eq!(opened.holder(), Some((user(7), &hash("h"))));
    }

    #[test]
    fn a_taken_name_cannot_be_opened_again() {
        let account = given(vec![AccountEvent::AccountOpened {
            user_id: user(7),
            password_hash: hash("h"),
        }]);
        let error = account
            .decide(AccountCommand::Open {
                user_id: user(8),
                password_hash: hash("other"),
            })
            .unwrap_err();
        assert_eq!(error, AccountError::NameTaken);
    }
}
