//! Posting and deleting comments.

use domain::comment::{Comment, CommentCommand, CommentError};
use domain::text::CommentText;
use domain::user::{User, UserName};
use domain::{CommentId, UserId, VideoId};
use infra::event_store::EventStore;
use postgres_es::PostgresCqrs;

use crate::writes::{execute, now_ms, video_author, WriteError};

/// A comment just posted, for the reply.
#[derive(Debug)]
pub struct Posted {
    pub id: CommentId,
    pub at: i64,
    pub author_name: UserName,
}

pub struct Comments {
    store: EventStore,
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
    pub fn new(store: EventStore) -> Self {
        Self {
            comments: store.cqrs(()),
            store,
        }
    }

    pub async fn post(
        &self,
        user: UserId,
        video: VideoId,
        text: CommentText,
    ) -> Result<Posted, WriteError> {
        let video_author_id = video_author(&self.store, video).await?;
        let author: User = self
            .store
            .load(&user.to_string())
            .await
            .map_err(WriteError::of_store)?;
        let author_name = author.name().cloned().ok_or(WriteError::NoSuchUser(user))?;
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
