#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoError {
    #[error("this video id is already published")]
    AlreadyPublished,
}
