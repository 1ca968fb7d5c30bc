#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommentError {
    #[error("this comment id is already taken")]
    AlreadyPosted,
    #[error("no such comment on this video")]
    NotFound,
    #[error("only the comment's author or the video's author may delete it")]
    NotYours,
}
