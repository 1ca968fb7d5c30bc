use super::UserName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Creates the profile of a user whose account was just opened under `name`.
    Register { name: UserName },
}
