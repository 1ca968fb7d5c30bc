use crate::text::Title;
use crate::UserId;

/// Where the server stored a video's media; keys are made by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub video_key: String,
    /// None when no cover could be taken from the video: readers show the default cover.
    pub cover_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoCommand {
    /// `published_at` (epoch ms) is unique across videos: it is the feed's cursor.
    Publish {
        author: UserId,
        title: Title,
        media: Media,
        published_at: i64,
    },
}
