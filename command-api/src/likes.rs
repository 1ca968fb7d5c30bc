//! Liking and unliking videos.

use domain::like::{Like, LikeCommand};
use domain::{UserId, VideoId};
use infra::event_store::EventStore;
use postgres_es::PostgresCqrs;

use crate::writes::{execute, now_ms, Facts, WriteError, SNAPSHOT_EVERY};

pub struct Likes {
    facts: Facts,
    likes: PostgresCqrs<Like>,
}

impl Likes {
    pub fn new(store: &EventStore, facts: Facts) -> Self {
        Self {
            likes: store.snapshotting_cqrs(SNAPSHOT_EVERY, ()),
            facts,
        }
    }

    /// Makes `user`'s like of `video` on (`liked`) or off; asking for what already is
    /// changes nothing.
    pub async fn set(&self, user: UserId, video: VideoId, liked: bool) -> Result<(), WriteError> {
        let video_author_id = self.facts.video_author(video).await?;
        let command = if liked {
            LikeCommand::Like {
                video_id: video,
                user_id: user,
                video_author_id,
                at: now_ms(),
            }
        } else {
            LikeCommand::Unlike {
                video_id: video,
                user_id: user,
                video_author_id,
            }
        };
        execute(
            &self.likes,
            &Like::id(video, user),
            command,
            |never| match never {},
        )
        .await
    }
}
