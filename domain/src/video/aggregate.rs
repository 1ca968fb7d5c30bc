use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{VideoCommand, VideoError, VideoEvent};
use crate::UserId;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Video {
    author: Option<UserId>,
}

impl Video {
    /// Who published the video; None when no video has this id.
    pub fn author(&self) -> Option<UserId> {
        self.author
    }

    pub fn decide(&self, command: VideoCommand) -> Result<Vec<VideoEvent>, VideoError> {
        match command {
            VideoCommand::Publish {
                author,
                title,
                media,
                published_at,
            } => match self.author {
                Some(_) => Err(VideoError::AlreadyPublished),
                None => Ok(vec![VideoEvent::VideoPublished {
                    author_id: author,
                    title,
                    video_key: media.video_key,
                    cover_key: media.cover_key,
                    published_at,
                }]),
            },
        }
    }
}

impl Aggregate for Video {
    const TYPE: &'static str = "video";
    type Command = VideoCommand;
    type Event = VideoEvent;
    type Error = VideoError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        crate::record(self, sink, events).await
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            VideoEvent::VideoPublished { author_id, .. } => self.author = Some(author_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Title;
    use crate::video::Media;

    fn user(id: i64) -> UserId {
        UserId::try_from(id).unwrap()
    }

    fn publish() -> VideoCommand {
        VideoCommand::Publish {
            author: user(1),
            title: Title::parse("cats").unwrap(),
            media: Media {
                video_key: "videos/1.mp4".into(),
                cover_key: None,
            },
            published_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn publishing_records_author_title_and_media() {
        let video = Video::default();
        let events = video.decide(publish()).unwrap();
        assert_eq!(
            serde_json::to_value(&events[0]).unwrap(),
            serde_json::json!({"VideoPublished": {
                "author_id": 1, "title": "cats", "video_key": "videos/1.mp4",
                "cover_key": null, "published_at": 1_700_000_000_000_i64
            }})
        );
    }

    #[test]
    fn a_video_is_published_once() {
        let mut video = Video::default();
        for event in video.decide(publish()).unwrap() {
            video.apply(event);
        }
        assert_eq!(video.author(), Some(user(1)));
        assert_eq!(video.decide(publish()), Err(VideoError::AlreadyPublished));
    }
}
