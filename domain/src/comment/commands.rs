use crate::text::CommentText;
use crate::{UserId, VideoId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentCommand {
    Post {
        video_id: VideoId,
        video_author_id: UserId,
        user_id: UserId,
        text: CommentText,
        at: i64,
    },
    /// `video_id` is the video the client says the comment is on.
    Delete { video_id: VideoId, by: UserId },
}
