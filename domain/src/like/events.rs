use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{UserId, VideoId};

/// Events of the `like` aggregate; their JSON is part of the public contract (docs/events.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LikeEvent {
    VideoLiked {
        video_id: VideoId,
        user_id: UserId,
        video_author_id: UserId,
        /// Epoch milliseconds.
        liked_at: i64,
    },
    VideoUnliked {
        video_id: VideoId,
        user_id: UserId,
        video_author_id: UserId,
    },
}

impl DomainEvent for LikeEvent {
    fn event_type(&self) -> String {
        match self {
            Self::VideoLiked { .. } => "VideoLiked".to_owned(),
            Self::VideoUnliked { .. } => "VideoUnliked".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
