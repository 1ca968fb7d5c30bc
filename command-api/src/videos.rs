//! Publishing: the uploaded video and a cover taken from it are stored under keys the server
//! makes, then the `video` aggregate records the publication. Should the command fail, the
//! stored objects are removed again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use domain::text::Title;
use domain::video::{Media, Video, VideoCommand, VideoError};
use domain::{UserId, VideoId};
use infra::event_store::EventStore;
use infra::media::MediaStore;
use postgres_es::PostgresCqrs;
use tempfile::NamedTempFile;
use tokio::process::Command;

use crate::upload::VideoKind;
use crate::writes::{execute, now_ms, WriteError};

/// Taking a cover from a sane video takes well under a second.
const COVER_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Videos {
    store: EventStore,
    videos: PostgresCqrs<Video>,
    media: MediaStore,
    ffmpeg: PathBuf,
}

impl Videos {
    pub fn new(store: EventStore, media: MediaStore, ffmpeg: PathBuf) -> Self {
        Self {
            videos: store.cqrs(()),
            store,
            media,
            ffmpeg,
        }
    }

    pub async fn publish(
        &self,
        author: UserId,
        title: Title,
        file: &Path,
        kind: VideoKind,
    ) -> Result<VideoId, WriteError> {
        let id = self.store.next_video_id().await?;
        let video_key = format!("videos/{id}.{}", kind.extension);
        let cover = cover(&self.ffmpeg, file).await;
        let cover_key = cover.as_ref().map(|_| format!("covers/{id}.jpg"));

        let stored = async {
            self.media.put_file(&video_key, file).await?;
            if let (Some(cover), Some(key)) = (&cover, &cover_key) {
                self.media.put_file(key, cover.path()).await?;
            }
            anyhow::Ok(())
        }
        .await;
        let published = match stored {
            Ok(()) => {
                let command = VideoCommand::Publish {
                    author,
                    title,
                    media: Media {
                        video_key: video_key.clone(),
                        cover_key: cover_key.clone(),
                    },
                    published_at: self.store.next_publish_time(now_ms()).await?,
                };
                execute(
                    &self.videos,
                    &id.to_string(),
                    command,
                    |error: VideoError| WriteError::Store(error.into()),
                )
                .await
            }
            Err(error) => Err(WriteError::Store(error)),
        };
        if let Err(error) = published {
            // Nothing refers to these objects: leave no trace of the failed publish.
            for key in std::iter::once(&video_key).chain(&cover_key) {
                if let Err(error) = self.media.delete(key).await {
                    tracing::warn!(%error, key, "could not remove an orphaned object");
                }
            }
            return Err(error);
        }
        Ok(id)
    }
}

/// A JPEG cover from a representative frame near the start of the video; None when ffmpeg
/// cannot make one (it is missing, or the video cannot be decoded), and the default cover
/// is shown instead.
async fn cover(ffmpeg: &Path, video: &Path) -> Option<NamedTempFile> {
    let cover = tempfile::Builder::new().suffix(".jpg").tempfile().ok()?;
    let run = Command::new(ffmpeg)
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(video)
        .args([
            "-vf",
            "thumbnail=n=25,scale='min(720,iw)':-2",
            "-frames:v",
            "1",
            "-f",
            "image2",
            "-c:v",
            "mjpeg",
            "-q:v",
            "4",
        ])
        .arg(cover.path())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COVER_TIMEOUT, run).await {
        Ok(Ok(output)) if output.status.success() => {
            let made = std::fs::metadata(cover.path()).is_ok_and(|meta| meta.len() > 0);
            made.then_some(cover)
        }
        Ok(Ok(output)) => {
            tracing::warn!(
                stderr = %String::from_utf8_lossy(&output.stderr),
                "ffmpeg could not take a cover; using the default"
            );
            None
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, ffmpeg = %ffmpeg.display(), "cannot run ffmpeg; using the default cover");
            None
        }
        Err(_) => {
            tracing::warn!("ffmpeg took too long to take a cover; using the default");
            None
        }
    }
}
