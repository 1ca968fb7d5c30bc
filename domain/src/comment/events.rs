use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::text::CommentText;
use crate::{UserId, VideoId};

/// Events of the `comment` aggregate; their JSON is part of the public contract
/// (docs/events.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CommentEvent {
    CommentPosted {
        video_id: VideoId,
        video_author_id: UserId,
        user_id: UserId,
        content: CommentText,
        /// Epoch milliseconds.
        posted_at: i64,
    },
    CommentDeleted {
        video_id: VideoId,
        deleted_by: UserId,
    },
}

impl DomainEvent for CommentEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CommentPosted { .. } => "CommentPosted".to_owned(),
            Self::CommentDeleted { .. } => "CommentDeleted".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
