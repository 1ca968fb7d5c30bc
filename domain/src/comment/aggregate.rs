use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{CommentCommand, CommentError, CommentEvent};
use crate::{UserId, VideoId};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    posted: Option<Posted>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Posted {
    video_id: VideoId,
    author: UserId,
    video_author: UserId,
    deleted: bool,
}

impl Comment {
    pub fn decide(&self, command: CommentCommand) -> Result<Vec<CommentEvent>, CommentError> {
        match command {
            CommentCommand::Post {
                video_id,
                video_author_id,
                user_id,
                text,
                at,
            } => match self.posted {
                Some(_) => Err(CommentError::AlreadyPosted),
                None => Ok(vec![CommentEvent::CommentPosted {
                    video_id,
                    video_author_id,
                    user_id,
                    content: text,
                    posted_at: at,
                }]),
            },
            CommentCommand::Delete { video_id, by } => {
                let posted = self
                    .posted
                    .as_ref()
                    .filter(|posted| posted.video_id == video_id)
                    .ok_or(CommentError::NotFound)?;
                if by != posted.author && by != posted.video_author {
                    return Err(CommentError::NotYours);
                }
                if posted.deleted {
                    // A repeated delete: already done.
                    return Ok(vec![]);
                }
                Ok(vec![CommentEvent::CommentDeleted {
                    video_id,
                    deleted_by: by,
                }])
            }
        }
    }
}

impl Aggregate for Comment {
    const TYPE: &'static str = "comment";
    type Command = CommentCommand;
    type Event = CommentEvent;
    type Error = CommentError;
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
            CommentEvent::CommentPosted {
                video_id,
                video_author_id,
                user_id,
                ..
            } => {
                self.posted = Some(Posted {
                    video_id,
                    author: user_id,
                    video_author: video_author_id,
                    deleted: false,
                })
            }
            CommentEvent::CommentDeleted { .. } => {
                if let Some(posted) = &mut self.posted {
                    posted.deleted = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::CommentText;

    const AUTHOR: i64 = 1;
    const VIDEO_AUTHOR: i64 = 2;
    const STRANGER: i64 = 3;

    fn user(id: i64) -> UserId {
        UserId::try_from(id).unwrap()
    }

    fn video(id: i64) -> VideoId {
        VideoId::try_from(id).unwrap()
    }

    fn posted() -> Comment {
        let mut comment = Comment::default();
        let events = comment
            .decide(CommentCommand::Post {
                video_id: video(9),
                video_author_id: user(VIDEO_AUTHOR),
                user_id: user(AUTHOR),
                text: CommentText::parse("nice").unwrap(),
                at: 1,
            })
            .unwrap();
        events.into_iter().for_each(|event| comment.apply(event));
        comment
    }

    fn delete(by: i64) -> CommentCommand {
        CommentCommand::Delete {
            video_id: video(9),
            by: user(by),
        }
    }

    #[test]
    fn the_author_or_the_video_author_may_delete() {
        for by in [AUTHOR, VIDEO_AUTHOR] {
            assert_eq!(
                posted().decide(delete(by)).unwrap(),
                vec![CommentEvent::CommentDeleted {
                    video_id: video(9),
                    deleted_by: user(by)
                }]
            );
        }
    }

    #[test]
    fn a_stranger_may_not_delete() {
        assert_eq!(
            posted().decide(delete(STRANGER)),
            Err(CommentError::NotYours)
        );
    }

    #[test]
    fn deleting_twice_deletes_once() {
        let mut comment = posted();
        for event in comment.decide(delete(AUTHOR)).unwrap() {
            comment.apply(event);
        }
        assert_eq!(comment.decide(delete(AUTHOR)), Ok(vec![]));
    }

    #[test]
    fn a_comment_that_does_not_exist_or_is_on_another_video_is_not_found() {
        assert_eq!(
            Comment::default().decide(delete(AUTHOR)),
            Err(CommentError::NotFound)
        );
        let elsewhere = CommentCommand::Delete {
            video_id: video(10),
            by: user(AUTHOR),
        };
        assert_eq!(posted().decide(elsewhere), Err(CommentError::NotFound));
    }
}
