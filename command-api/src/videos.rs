//! Publishing: the uploaded video and a cover taken from it are stored under keys the server
//! makes, then the `video` aggregate records the publication. Should the command fail, the
//! stored objects are removed again.
//!
//! The cover is taken by ffmpeg from bytes anyone may have crafted, so ffmpeg is run as a
//! program that may be made to misbehave: in a sandbox (another user, no network: see
//! [`crate::sandbox`]), with an empty environment, reading only the uploaded file, as the
//! container its signature says, under CPU, memory and file limits, on one thread, and a
//! bounded number at once.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use domain::text::Title;
use domain::video::{Media, Video, VideoCommand, VideoError};
use domain::{UserId, VideoId};
use http_api::media::MediaStore;
use infra::event_store::EventStore;
use infra::settings::MediaSettings;
use postgres_es::PostgresCqrs;
use tempfile::NamedTempFile;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::Semaphore;

use crate::sandbox::Sandbox;
use crate::upload::VideoKind;
use crate::writes::{execute, now_ms, WriteError};

/// Taking a cover from a sane video takes well under a second (4K 10-bit HEVC: 2.5 s).
const COVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a publish waits for a turn to take its cover before it is refused as busy: past
/// this, the client is better told to try again than left waiting.
const TURN_TIMEOUT: Duration = Duration::from_secs(10);

/// Virtual memory (address space) one ffmpeg run may map. Virtual, not resident: ffmpeg maps
/// about 290 MiB of libraries before it reads a byte. The least that still made a cover,
/// measured: a 100 MiB 1080p H.264 phone video 375 MiB (145 MiB resident), 4K H.264 600 MiB,
/// 4K 10-bit HEVC (what an iPhone records) 770 MiB. 2 GiB leaves over twice that; an 8K video
/// gets the default cover.
const FFMPEG_ADDRESS_SPACE: u64 = 2 << 30;
/// ffmpeg opens 5 files here (standard streams, the video, the cover).
const FFMPEG_OPEN_FILES: u32 = 32;
/// The largest file ffmpeg may write: a 720-pixel-wide JPEG is well under 1 MiB.
const FFMPEG_FILE_SIZE: u64 = 16 << 20;
/// What is kept of ffmpeg's error output for the log; a crafted video can make it write
/// error lines for as long as it runs.
const STDERR_KEPT: u64 = 16 * 1024;
/// Where util-linux installs `prlimit` (essential on Debian); the PATH is searched after.
const PRLIMIT_PATHS: [&str; 2] = ["/usr/bin/prlimit", "/bin/prlimit"];

pub struct Videos {
    store: EventStore,
    videos: PostgresCqrs<Video>,
    media: MediaStore,
    covers: Covers,
}

impl Videos {
    /// `sandbox`: where ffmpeg may run ([`Sandbox::probe`]), or why nowhere.
    pub fn new(
        store: EventStore,
        media: MediaStore,
        settings: &MediaSettings,
        sandbox: Result<Sandbox, String>,
    ) -> Self {
        Self {
            videos: store.cqrs(()),
            store,
            media,
            covers: Covers::new(settings, sandbox),
        }
    }

    pub async fn publish(
        &self,
        author: UserId,
        title: Title,
        file: &Path,
        kind: VideoKind,
    ) -> Result<VideoId, WriteError> {
        // The cover first: a publish refused as busy then has taken no id.
        let cover = self.covers.take(file, kind).await?;
        let id = self.store.next_video_id().await?;
        let media = Media {
            video_key: format!("videos/{id}.{}", kind.extension),
            cover_key: cover.as_ref().map(|_| format!("covers/{id}.jpg")),
        };
        let stored = async {
            self.media.put_file(&media.video_key, file).await?;
            if let (Some(cover), Some(key)) = (&cover, &media.cover_key) {
                self.media.put_file(key, cover.path()).await?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = stored {
            self.remove(&media).await;
            return Err(WriteError::Store(error));
        }
        let recorded = self.record(id, author, title, media.clone()).await;
        match recorded {
            Ok(()) => Ok(id),
            Err(error) if !error.may_have_committed() => {
                // Nothing refers to these objects: leave no trace of the failed publish.
                self.remove(&media).await;
                Err(error)
            }
            Err(error) => self.after_an_unknown_outcome(id, error).await,
        }
    }

    async fn record(
        &self,
        id: VideoId,
        author: UserId,
        title: Title,
        media: Media,
    ) -> Result<(), WriteError> {
        let command = VideoCommand::Publish {
            author,
            title,
            media,
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

    /// The event store went away while the publish was recorded: it may have committed, its
    /// `VideoPublished` on its way to the feed, and its objects must then stay. Asked again:
    /// committed, the publish succeeded. Otherwise its objects stay all the same (a commit may
    /// still be on its way: queued, or waiting for a replica), for `sweep-media`, which
    /// removes them once no event refers to them after its grace period.
    async fn after_an_unknown_outcome(
        &self,
        id: VideoId,
        error: WriteError,
    ) -> Result<VideoId, WriteError> {
        match self.store.load::<Video>(&id.to_string()).await {
            Ok(video) if video.author().is_some() => {
                tracing::warn!(%error, video = %id, "the publish committed though its answer was lost");
                // Answered once readable, as if the answer had come.
                infra::written::note(infra::written::Written {
                    aggregate_type: <Video as cqrs_es::Aggregate>::TYPE,
                    aggregate_id: id.to_string(),
                    sequence: None,
                });
                Ok(id)
            }
            Ok(_) => {
                tracing::warn!(%error, video = %id,
                    "the publish is not committed, or not yet: its objects are left to sweep-media");
                Err(error)
            }
            Err(unknown) => {
                tracing::warn!(%error, %unknown, video = %id,
                    "cannot tell whether the publish committed: its objects are left to sweep-media");
                Err(error)
            }
        }
    }

    async fn remove(&self, media: &Media) {
        for key in std::iter::once(&media.video_key).chain(&media.cover_key) {
            if let Err(error) = self.media.delete(key).await {
                tracing::warn!(%error, key, "could not remove an orphaned object");
            }
        }
    }
}

/// Takes covers with ffmpeg, at most as many at once as `turns` has permits.
struct Covers {
    /// `prlimit`, ffmpeg and the sandbox to run them in, found once at start-up; None when
    /// any is missing, and every video gets the default cover.
    programs: Option<Programs>,
    turns: Semaphore,
}

struct Programs {
    prlimit: PathBuf,
    ffmpeg: PathBuf,
    sandbox: Sandbox,
}

/// A cover ffmpeg made: the JPEG it wrote to its standard output, kept in a file of the
/// service's own (ffmpeg is handed no path the service later opens).
pub struct Cover(NamedTempFile);

impl Cover {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Covers {
    fn new(settings: &MediaSettings, sandbox: Result<Sandbox, String>) -> Self {
        // The child's environment is empty, so nothing in it could search a PATH.
        let prlimit = PRLIMIT_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|path| executable(path))
            .or_else(|| on_path(OsStr::new("prlimit")));
        let ffmpeg = program(&settings.ffmpeg);
        if prlimit.is_none() {
            tracing::warn!("no prlimit (util-linux) to run ffmpeg under limits: default covers");
        }
        if ffmpeg.is_none() {
            tracing::warn!(ffmpeg = %settings.ffmpeg.display(), "cannot find ffmpeg: default covers");
        }
        let sandbox = match sandbox {
            Ok(sandbox) => {
                tracing::info!(?sandbox, "ffmpeg takes covers in a sandbox");
                Some(sandbox)
            }
            Err(why) => {
                tracing::warn!(%why, "no sandbox for ffmpeg can be made here: default covers");
                None
            }
        };
        Self {
            programs: match (prlimit, ffmpeg, sandbox) {
                (Some(prlimit), Some(ffmpeg), Some(sandbox)) => Some(Programs {
                    prlimit,
                    ffmpeg,
                    sandbox,
                }),
                _ => None,
            },
            // No turns at all would refuse every publish.
            turns: Semaphore::new(
                settings
                    .ffmpeg_max_concurrent
                    .clamp(1, Semaphore::MAX_PERMITS),
            ),
        }
    }

    /// A JPEG cover from a representative frame near the start of the video; None when
    /// ffmpeg cannot make one (it is missing, the video cannot be decoded, or is of a kind
    /// ffmpeg is not told how to read), and the default cover is shown instead. Busy when no
    /// turn to run ffmpeg came in time.
    async fn take(&self, video: &Path, kind: VideoKind) -> Result<Option<Cover>, WriteError> {
        let Some(demuxer) = demuxer(kind) else {
            tracing::warn!(
                ?kind,
                "no ffmpeg demuxer for this kind of video; using the default cover"
            );
            return Ok(None);
        };
        let Some(programs) = &self.programs else {
            return Ok(None);
        };
        let input = match programs.sandbox.input(video) {
            Ok(input) => input,
            Err(error) => {
                tracing::warn!(%error, "could not hand the upload to ffmpeg; using the default cover");
                return Ok(None);
            }
        };
        let command = cover_command(programs, demuxer, input.path());

        // The semaphore is never closed: the only error is waiting too long.
        let Ok(Ok(turn)) = tokio::time::timeout(TURN_TIMEOUT, self.turns.acquire()).await else {
            tracing::warn!("no turn to take a cover came in time; the publish is refused as busy");
            return Err(WriteError::Busy);
        };
        let jpeg = run(command).await;
        drop(turn);
        drop(input);
        let Some(jpeg) = jpeg.filter(|jpeg| !jpeg.is_empty()) else {
            return Ok(None);
        };
        let kept = tempfile::Builder::new()
            .suffix(".jpg")
            .tempfile()
            .and_then(|mut file| {
                std::io::Write::write_all(&mut file, &jpeg)?;
                Ok(file)
            });
        match kept {
            Ok(file) => Ok(Some(Cover(file))),
            Err(error) => {
                tracing::warn!(%error, "could not keep the cover; using the default");
                Ok(None)
            }
        }
    }
}

/// The ffmpeg demuxer for a container recognised by `infer`, so that ffmpeg reads the upload
/// as what its signature says rather than guessing (and perhaps picking a playlist format that
/// opens other files). Covers every video kind of `infer` 0.19; a kind it may add later has
/// none, and gets the default cover.
fn demuxer(kind: VideoKind) -> Option<&'static str> {
    Some(match kind.extension {
        // `mov` reads every ISO base media file: MP4, M4V, QuickTime.
        "mp4" | "m4v" | "mov" => "mov",
        // One demuxer for both, `matroska,webm`.
        "mkv" | "webm" => "matroska",
        "avi" => "avi",
        "wmv" => "asf",
        "flv" => "flv",
        // A program stream (`.mpg`); a bare MPEG video stream gets the default cover.
        "mpg" => "mpeg",
        _ => return None,
    })
}

/// `<sandbox> prlimit <limits> -- ffmpeg <arguments>`: the sandbox's programs and prlimit
/// each set up their part and then become the next (exec), so ffmpeg is the service's child
/// and the timeout's kill reaches it.
fn cover_command(programs: &Programs, demuxer: &str, video: &Path) -> Command {
    // `file:` before a path: a name can never be read as another protocol or an option.
    let file = |path: &Path| {
        let mut url = OsString::from("file:");
        url.push(path);
        url
    };
    let mut command = programs.sandbox.command(&programs.prlimit);
    command
        .env_clear()
        .args([
            format!("--as={FFMPEG_ADDRESS_SPACE}"),
            // The wall-clock timeout's worth of CPU: an ffmpeg left running by a service
            // that was killed outright (kill_on_drop never ran) still stops.
            format!("--cpu={}", COVER_TIMEOUT.as_secs()),
            format!("--nofile={FFMPEG_OPEN_FILES}"),
            format!("--fsize={FFMPEG_FILE_SIZE}"),
            // No core dump of a process that held an upload's bytes.
            "--core=0".to_owned(),
            // No `--nproc`: it counts every thread of the service's user, not ffmpeg's.
            "--".to_owned(),
        ])
        .arg(&programs.ffmpeg)
        .args(["-nostdin", "-loglevel", "error", "-y"])
        // One thread for the filters, the decoder and the encoder: a cover takes one core.
        .args(["-filter_threads", "1", "-threads", "1"])
        .args(["-protocol_whitelist", "file", "-f", demuxer, "-i"])
        .arg(file(video))
        .args([
            "-an",
            "-sn",
            "-dn",
            "-vf",
            "thumbnail=n=25,scale='min(720,iw)':-2",
            "-frames:v",
            "1",
            "-threads",
            "1",
            // The JPEG on standard output: ffmpeg writes no file the service then opens.
            "-f",
            "image2pipe",
            "-c:v",
            "mjpeg",
            "-q:v",
            "4",
            "pipe:1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs a cover command to its end, or kills it after the timeout; the cover it wrote to its
/// standard output if it succeeded (at most [`FFMPEG_FILE_SIZE`] bytes are taken).
async fn run(mut command: Command) -> Option<Vec<u8>> {
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(%error, "cannot run ffmpeg; using the default cover");
            return None;
        }
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let ran = async {
        // Each read to the end, so that ffmpeg never blocks on a full pipe.
        let read_cover = async {
            let mut cover = Vec::new();
            if let Some(mut stdout) = stdout {
                let _ = (&mut stdout)
                    .take(FFMPEG_FILE_SIZE)
                    .read_to_end(&mut cover)
                    .await;
                let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
            }
            cover
        };
        let read_stderr = async {
            let mut kept = Vec::new();
            if let Some(mut stderr) = stderr {
                let _ = (&mut stderr).take(STDERR_KEPT).read_to_end(&mut kept).await;
                let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            }
            kept
        };
        tokio::join!(child.wait(), read_cover, read_stderr)
    };
    match tokio::time::timeout(COVER_TIMEOUT, ran).await {
        Ok((Ok(status), cover, _)) if status.success() => Some(cover),
        Ok((Ok(status), _, stderr)) => {
            tracing::warn!(
                %status,
                stderr = %String::from_utf8_lossy(&stderr),
                "ffmpeg could not take a cover; using the default"
            );
            None
        }
        Ok((Err(error), _, _)) => {
            tracing::warn!(%error, "ffmpeg could not be waited for; using the default cover");
            None
        }
        Err(_) => {
            // Dropping the child kills it (and the sandbox, everything it started).
            tracing::warn!("ffmpeg took too long to take a cover; using the default");
            None
        }
    }
}

/// `program` as given when it is a path (it has a `/`), else found on the service's PATH.
fn program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_owned());
    }
    on_path(program.as_os_str())
}

pub(crate) fn on_path(name: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| executable(candidate))
}

fn executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a file of each video container `infer` recognises.
    const SIGNATURES: [&[u8]; 9] = [
        b"\0\0\0\x20ftypisom\0\0\x02\0",
        b"\0\0\0\x20ftypM4V \0\0\x02\0",
        b"\0\0\0\x14ftypqt  \0\0\x02\0",
        b"\x1a\x45\xdf\xa3\x93\x42\x82\x88matroska",
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81",
        b"RIFF\0\0\0\0AVI LIST",
        b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\0\xaa",
        b"\0\0\x01\xba\x21\0\x01\0",
        b"FLV\x01\x01\0\0\0",
    ];

    #[test]
    fn every_video_kind_is_read_with_a_named_demuxer() {
        let mut extensions = Vec::new();
        for head in SIGNATURES {
            let kind = infer::get(head).expect("a known signature");
            assert_eq!(kind.matcher_type(), infer::MatcherType::Video, "{kind:?}");
            let kind = VideoKind {
                extension: kind.extension(),
                mime_type: kind.mime_type(),
            };
            assert!(demuxer(kind).is_some(), "{kind:?}");
            extensions.push(kind.extension);
        }
        assert_eq!(
            extensions,
            ["mp4", "m4v", "mov", "mkv", "webm", "avi", "wmv", "mpg", "flv"]
        );
    }

    #[test]
    fn ffmpeg_reads_only_the_upload_as_its_container() {
        let programs = Programs {
            prlimit: PathBuf::from("/usr/bin/prlimit"),
            ffmpeg: PathBuf::from("/usr/bin/ffmpeg"),
            sandbox: Sandbox::NonDumpableParent,
        };
        let command = cover_command(&programs, "mov", Path::new("-i http:x.mp4"));
        let command = command.as_std();
        let args: Vec<_> = command
            .get_args()
            .map(|arg| arg.to_str().unwrap())
            .collect();
        let ffmpeg = args
            .iter()
            .position(|arg| *arg == "/usr/bin/ffmpeg")
            .unwrap();
        assert_eq!(args[ffmpeg - 1], "--", "{args:?}");
        let input = args.iter().position(|arg| *arg == "-i").unwrap();
        assert_eq!(args[input + 1], "file:-i http:x.mp4");
        assert_eq!(
            args[input - 4..input],
            ["-protocol_whitelist", "file", "-f", "mov"]
        );
        assert_eq!(args.last(), Some(&"pipe:1"), "the cover on standard output");
    }
}
