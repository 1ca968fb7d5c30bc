#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("this user id is already registered under another name")]
    RegisteredUnderAnotherName,
}
