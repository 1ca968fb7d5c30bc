//! Posting and deleting comments.

use domain::comment::{Comment, CommentCommand, CommentError};
use domain::text::CommentText;
use domain::user::UserName;
use domain::{CommentId, UserId, VideoId};
use infra::event_store::EventStore;
use postgres_es::PostgresCqrs;

use crate::writes::{execute, now_ms, Facts, WriteError};

/// A comment just posted, for the reply.
#[derive(Debug)]
pub struct Posted {
    pub id: CommentId,
    pub at: i64,
    pub author_name: UserName,
}

pub struct Comments {
    store: EventStore,
    facts: Facts,
    comments: PostgresCqrs<Comment>,
}

fn refusal(error: CommentError) -> WriteError {
    match error {
        CommentError::NotFound => WriteError::NotFound(error.to_string()),
        CommentError::NotYours => WriteError::Forbidden(error.to_string()),
        CommentError::AlreadyPosted => WriteError::Store(anyhow::anyhow!(error)),
    }
}

impl Comments {
    pub fn new(store: &EventStore, facts: Facts) -> Self {
        Self {
            comments: store.cqrs(()),
            store: store.clone(),
            facts,
        }
    }

    pub async fn post(
        &self,
        user: UserId,
        video: VideoId,
        text: CommentText,
    ) -> Result<Posted, WriteError> {
        let video_author_id = self.facts.video_author(video).await?;
        let author_name = self.facts.user_name(user).await?;
        let id = self.store.next_comment_id().await?;
        let at = now_ms();
        let command = CommentCommand::Post {
            video_id: video,
            video_author_id,
            user_id: user,
            text,
            at,
        };
        execute(&self.comments, &id.to_string(), command, refusal).await?;
        Ok(Posted {
            id,
            at,
            author_name,
        })
    }

    pub async fn delete(
        &self,
        by: UserId,
        video: VideoId,
        comment: CommentId,
    ) -> Result<(), WriteError> {
        let command = CommentCommand::Delete {
            video_id: video,
            by,
        };
        execute(&self.comments, &comment.to_string(), command, refusal).await
    }
}
