use crate::{UserId, VideoId};

/// The video's author rides along so that events say whose `total_favorited` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LikeCommand {
    Like {
        video_id: VideoId,
        user_id: UserId,
        video_author_id: UserId,
        at: i64,
    },
    Unlike {
        video_id: VideoId,
        user_id: UserId,
        video_author_id: UserId,
    },
}
