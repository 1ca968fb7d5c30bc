#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error("you cannot follow yourself")]
    Yourself,
}
