use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{UserCommand, UserError, UserEvent, UserName};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    name: Option<UserName>,
}

impl User {
    pub fn is_registered(&self) -> bool {
        self.name.is_some()
    }

    pub fn name(&self) -> Option<&UserName> {
        self.name.as_ref()
    }

    pub fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::Register { name } => match &self.name {
                None => Ok(vec![UserEvent::UserRegistered { name }]),
                // Registration is retried after a crash between opening the account and
                // creating the profile; a retry with the same name has nothing left to do.
                Some(existing) if *existing == name => Ok(vec![]),
                Some(_) => Err(UserError::RegisteredUnderAnotherName),
            },
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
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
            UserEvent::UserRegistered { name } => self.name = Some(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(value: &str) -> UserName {
        UserName::parse(value).unwrap()
    }

    fn given(events: Vec<UserEvent>) -> User {
        let mut user = User::default();
        events.into_iter().for_each(|event| user.apply(event));
        user
    }

    #[test]
    fn registering_a_new_user_records_the_name() {
        let events = given(vec![])
            .decide(UserCommand::Register { name: name("ann") })
            .unwrap();
        assert_eq!(
            events,
            vec![UserEvent::UserRegistered { name: name("ann") }]
        );
    }

    #[test]
    fn registering_again_under_the_same_name_changes_nothing() {
        let events = given(vec![UserEvent::UserRegistered { name: name("ann") }])
            .decide(UserCommand::Register { name: name("ann") })
            .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn an_id_cannot_be_registered_under_a_second_name() {
        let error = given(vec![UserEvent::UserRegistered { name: name("ann") }])
            .decide(UserCommand::Register { name: name("bob") })
            .unwrap_err();
        assert_eq!(error, UserError::RegisteredUnderAnotherName);
    }

    #[test]
    fn events_serialise_to_the_documented_shape() {
        let json = serde_json::to_value(UserEvent::UserRegistered { name: name("ann") }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "UserRegistered": { "name": "ann" } })
        );
    }
}
