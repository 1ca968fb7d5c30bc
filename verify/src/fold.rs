//! What the read models should hold, folded from the event store with plain SQL over the
//! `events` table: a second implementation, sharing no code with the projector, of what each
//! event means (the public contract of docs/events.md).

use std::collections::BTreeSet;

use tokio_postgres::{Client, Transaction};

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
    models.likes = current_pairs(&tx, "like", "VideoLiked", ["user_id", "video_id"]).await?;
    models.follows = current_pairs(
        &tx,
        "follow",
        "UserFollowed",
        ["follower_id", "followee_id"],
    )
    .await?;
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

/// The pairs (of the payload's two `fields`) whose aggregate's last event is `on`: the likes,
/// or the follows, in force now.
async fn current_pairs(
    tx: &Transaction<'_>,
    aggregate_type: &str,
    on: &str,
    fields: [&str; 2],
) -> Result<BTreeSet<(i64, i64)>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT DISTINCT ON (aggregate_id) event_type = $2,
                    (payload -> event_type ->> $3)::bigint,
                    (payload -> event_type ->> $4)::bigint
               FROM events WHERE aggregate_type = $1
              ORDER BY aggregate_id, sequence DESC",
            &[&aggregate_type, &on, &fields[0], &fields[1]],
        )
        .await?;
    Ok(rows
        .iter()
        .filter(|row| row.get::<_, bool>(0))
        .map(|row| (row.get(1), row.get(2)))
        .collect())
}
