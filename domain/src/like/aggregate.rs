use std::convert::Infallible;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{LikeCommand, LikeEvent};
use crate::{UserId, VideoId};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Like {
    liked: bool,
}

impl Like {
    /// The aggregate id of `user`'s like of `video`.
    pub fn id(video: VideoId, user: UserId) -> String {
        format!("{video}:{user}")
    }

    pub fn decide(&self, command: LikeCommand) -> Vec<LikeEvent> {
        match command {
            LikeCommand::Like {
                video_id,
                user_id,
                video_author_id,
                at,
            } if !self.liked => vec![LikeEvent::VideoLiked {
                video_id,
                user_id,
                video_author_id,
                liked_at: at,
            }],
            LikeCommand::Unlike {
                video_id,
                user_id,
                video_author_id,
            } if self.liked => vec![LikeEvent::VideoUnliked {
                video_id,
                user_id,
                video_author_id,
            }],
            // Already as asked: a repeated tap changes nothing.
            _ => vec![],
        }
    }
}

impl Aggregate for Like {
    const TYPE: &'static str = "like";
    type Command = LikeCommand;
    type Event = LikeEvent;
    type Error = Infallible;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command);
        crate::record(self, sink, events).await
    }

    fn apply(&mut self, event: Self::Event) {
        self.liked = matches!(event, LikeEvent::VideoLiked { .. });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (VideoId, UserId, UserId) {
        (
            VideoId::try_from(7).unwrap(),
            UserId::try_from(1).unwrap(),
            UserId::try_from(2).unwrap(),
        )
    }

    fn like() -> LikeCommand {
        let (video_id, user_id, video_author_id) = ids();
        LikeCommand::Like {
            video_id,
            user_id,
            video_author_id,
            at: 5,
        }
    }

    fn unlike() -> LikeCommand {
        let (video_id, user_id, video_author_id) = ids();
        LikeCommand::Unlike {
            video_id,
            user_id,
            video_author_id,
        }
    }

    fn given(commands: Vec<LikeCommand>) -> Like {
        let mut like = Like::default();
        for command in commands {
            for event in like.decide(command) {
                like.apply(event);
            }
        }
        like
    }

    #[test]
    fn liking_records_a_like() {
        let events = given(vec![]).decide(like());
        assert!(matches!(
            events.as_slice(),
            [LikeEvent::VideoLiked { liked_at: 5, .. }]
        ));
    }

    #[test]
    fn liking_twice_records_one_like() {
        assert!(given(vec![like()]).decide(like()).is_empty());
    }

    #[test]
    fn unliking_what_is_not_liked_records_nothing() {
        assert!(given(vec![]).decide(unlike()).is_empty());
        assert!(given(vec![like(), unlike()]).decide(unlike()).is_empty());
    }

    #[test]
    fn a_like_can_be_taken_back_and_given_again() {
        assert!(matches!(
            given(vec![like()]).decide(unlike()).as_slice(),
            [LikeEvent::VideoUnliked { .. }]
        ));
        assert_eq!(given(vec![like(), unlike()]).decide(like()).len(), 1);
    }
}
