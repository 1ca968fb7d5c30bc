//! What the read models should hold, folded from the event store with plain SQL over the
//! `events` table: a second implementation, sharing no code with the projector, of what each
//! event means (the public contract of docs/events.md).

use tokio_postgres::Client;

use crate::models::{Comment, Models, User, Video};

/// Folds every event in the store, in one snapshot.
pub async fn fold(client: &mut Client) -> Result<Models, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut models = Models::default();
    for row in tx
        .query(
            "SELECT aggregate_id::bigint, payload -> 'UserRegistered' ->> 'name'
               FROM events WHERE aggregate_type = 'user' AND event_type = 'UserRegistered'",
            &[],
        )
        .await?
    {
        models.users.insert(
            row.get(0),
            User {
                name: row.get(1),
                ..User::default()
            },
        );
    }
    for row in tx
        .query(
            "SELECT aggregate_id::bigint, (payload -> 'VideoPublished' ->> 'author_id')::bigint,
                    payload -> 'VideoPublished' ->> 'title'
               FROM events WHERE aggregate_type = 'video' AND event_type = 'VideoPublished'",
            &[],
        )
        .await?
    {
        models.videos.insert(
            row.get(0),
            Video {
                author_id: row.get(1),
                title: row.get(2),
                ..Video::default()
            },
        );
    }
    // A like or a follow is what its aggregate's last event says.
    for row in tx
        .query(
            "SELECT DISTINCT ON (aggregate_id) event_type = 'VideoLiked',
                    (payload -> event_type ->> 'user_id')::bigint,
                    (payload -> event_type ->> 'video_id')::bigint
               FROM events WHERE aggregate_type = 'like'
              ORDER BY aggregate_id, sequence DESC",
            &[],
        )
        .await?
    {
        if row.get(0) {
            models.likes.insert((row.get(1), row.get(2)));
        }
    }
    for row in tx
        .query(
            "SELECT DISTINCT ON (aggregate_id) event_type = 'UserFollowed',
                    (payload -> event_type ->> 'follower_id')::bigint,
                    (payload -> event_type ->> 'followee_id')::bigint
               FROM events WHERE aggregate_type = 'follow'
              ORDER BY aggregate_id, sequence DESC",
            &[],
        )
        .await?
    {
        if row.get(0) {
            models.follows.insert((row.get(1), row.get(2)));
        }
    }
    for row in tx
        .query(
            "SELECT posted.aggregate_id::bigint,
                    (posted.payload -> 'CommentPosted' ->> 'video_id')::bigint,
                    (posted.payload -> 'CommentPosted' ->> 'user_id')::bigint
               FROM events posted
              WHERE posted.aggregate_type = 'comment' AND posted.event_type = 'CommentPosted'
                AND NOT EXISTS (
                    SELECT FROM events deleted
                     WHERE deleted.aggregate_type = 'comment'
                       AND deleted.aggregate_id = posted.aggregate_id
                       AND deleted.event_type = 'CommentDeleted')",
            &[],
        )
        .await?
    {
        models.comments.insert(
            row.get(0),
            Comment {
                video_id: row.get(1),
                user_id: row.get(2),
            },
        );
    }
    for row in tx
        .query(
            "SELECT (payload -> 'MessageSent' ->> 'message_id')::bigint
               FROM events WHERE aggregate_type = 'conversation' AND event_type = 'MessageSent'",
            &[],
        )
        .await?
    {
        models.messages.insert(row.get(0));
    }
    tx.commit().await?;
    models.count();
    Ok(models)
}
