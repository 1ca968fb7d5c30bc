//! Removes stored media no published video refers to: objects an upload stored just before
//! its process died, so that its command never ran (a failed command removes its objects
//! itself). Objects younger than a grace period are left alone: they may belong to an upload
//! whose command is still to run.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use http_api::media::MediaStore;
use infra::event_store::EventStore;

/// How long an upload may take from storing its objects to its command being decided.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Less than this and an upload in progress could lose its objects.
pub const MIN_GRACE: Duration = Duration::from_secs(300);

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Objects a published video refers to.
    pub kept: usize,
    /// Unreferenced objects, younger than the grace period.
    pub young: usize,
    pub removed: usize,
}

pub async fn sweep_media(
    store: &EventStore,
    media: &MediaStore,
    grace: Duration,
) -> anyhow::Result<Swept> {
    // Listed before the references are read: an object stored after the listing is not
    // considered, and one whose video is published meanwhile is referenced by then.
    // Only the folders uploads are stored in: a bucket may hold other things.
    let mut objects = media.list("videos").await?;
    objects.extend(media.list("covers").await?);
    // Every publication ever: longer than the statement timeout that keeps requests quick
    // may allow, so this one transaction lifts it.
    let mut scan = store.pool().begin().await?;
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *scan)
        .await?;
    let referenced: HashSet<String> = sqlx::query_scalar::<_, Option<String>>(
        "SELECT unnest(ARRAY[payload -> 'VideoPublished' ->> 'video_key',
                             payload -> 'VideoPublished' ->> 'cover_key'])
           FROM events
          WHERE aggregate_type = 'video' AND event_type = 'VideoPublished'",
    )
    .fetch_all(&mut *scan)
    .await?
    .into_iter()
    .flatten()
    .collect();
    scan.commit().await?;
    let cutoff = Utc::now() - grace;
    let mut swept = Swept::default();
    for (key, stored_at) in objects {
        if referenced.contains(&key) {
            swept.kept += 1;
        } else if stored_at > cutoff {
            swept.young += 1;
        } else {
            tracing::info!(key, %stored_at, "removing media no video refers to");
            media.delete(&key).await?;
            swept.removed += 1;
        }
    }
    Ok(swept)
}
