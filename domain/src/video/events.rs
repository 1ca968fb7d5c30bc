use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::text::Title;
use crate::UserId;

/// Events of the `video` aggregate; their JSON is part of the public contract (docs/events.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VideoEvent {
    VideoPublished {
        author_id: UserId,
        title: Title,
        video_key: String,
        cover_key: Option<String>,
        /// Epoch milliseconds, unique across videos.
        published_at: i64,
    },
}

impl DomainEvent for VideoEvent {
    fn event_type(&self) -> String {
        match self {
            Self::VideoPublished { .. } => "VideoPublished".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
