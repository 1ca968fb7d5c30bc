//! The publish form: a multipart body whose `data` part is streamed to a temporary file,
//! counted as it arrives and cut off past the size cap, so that no upload is ever held whole
//! in memory.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_multipart::Multipart;
use actix_web::HttpRequest;
use futures::{Stream, StreamExt};
use http_api::http::{declared_length, malformed_multipart, query_pairs, ApiError, Params};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of the start of the file kept to recognise its container format.
const HEAD_BYTES: usize = 8 * 1024;
/// Text fields of the publish form (`token`, `title`) are short and few.
const MAX_TEXT_FIELD: usize = 4 * 1024;
const MAX_TEXT_FIELDS: usize = 8;

/// Uploads being received at once. Each holds a temporary file of up to `MAX_UPLOAD_BYTES`,
/// and the publish form may carry its token after the file, so nothing else bounds how many
/// anonymous ones fill the disk: one past `UPLOADS_AT_ONCE` is turned away before it is read.
/// Of those, a file that starts before any token (its sender unknown until the end) takes
/// one of at most half the slots, and one per client address (an IPv6 /64); a file whose
/// token came first counts against its user, [`UPLOADS_PER_USER`] at once.
pub struct UploadSlots {
    all: Arc<Semaphore>,
    anonymous: Arc<Semaphore>,
    per_address: Holders,
    per_user: Holders,
}

/// Uploads one user may have in progress at once (on one command API): a client publishing a
/// few at once, not a flood.
pub const UPLOADS_PER_USER: usize = 4;

/// A busy moment for uploads lasts about as long as one upload.
const UPLOAD_RETRY_AFTER: Duration = Duration::from_secs(5);

fn busy() -> ApiError {
    ApiError::Busy {
        retry_after: UPLOAD_RETRY_AFTER,
    }
}

/// What an upload holds while it is received, given back when dropped.
pub struct UploadSlot {
    _slot: OwnedSemaphorePermit,
    _allowance: Option<Allowance>,
}

/// An upload's share of the allowance of its sender: anonymous (and its address's), or its
/// user's.
enum Allowance {
    Anonymous {
        _permit: OwnedSemaphorePermit,
        _address: Hold,
    },
    User {
        _user: Hold,
    },
}

impl UploadSlots {
    pub fn new(at_once: usize) -> Self {
        let at_once = at_once.max(1);
        Self {
            all: Arc::new(Semaphore::new(at_once)),
            anonymous: Arc::new(Semaphore::new((at_once / 2).max(1))),
            per_address: Holders::new(1),
            per_user: Holders::new(UPLOADS_PER_USER),
        }
    }

    /// A slot held until the returned one is dropped, or "busy" when none is free.
    pub fn take(&self) -> Result<UploadSlot, ApiError> {
        let slot = self.all.clone().try_acquire_owned().map_err(|_| busy())?;
        Ok(UploadSlot {
            _slot: slot,
            _allowance: None,
        })
    }

    /// The file of `slot`'s upload starts, sent by `sender` (known by the token sent before
    /// it, or only by its address): it takes its share of that sender's allowance, or is
    /// "busy" at once.
    pub fn file_starts(&self, slot: &mut UploadSlot, sender: Sender) -> Result<(), ApiError> {
        let allowance = match sender {
            Sender::User(user) => Allowance::User {
                _user: self.per_user.hold(&user.to_string()).ok_or_else(busy)?,
            },
            Sender::Anonymous(address) => {
                let address = self
                    .per_address
                    .hold(http_api::rate_limit::Subject::address(address).as_str())
                    .ok_or_else(busy)?;
                let anonymous = self
                    .anonymous
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| busy())?;
                Allowance::Anonymous {
                    _permit: anonymous,
                    _address: address,
                }
            }
        };
        slot._allowance = Some(allowance);
        Ok(())
    }
}

/// Who sends a file, as far as is known when it starts.
pub enum Sender {
    User(domain::UserId),
    Anonymous(std::net::IpAddr),
}

/// Counts of what each holder (a user, an address) holds, at most `each` apiece.
#[derive(Clone)]
struct Holders {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    each: usize,
}

/// One thing held by `holder`, given back when dropped.
struct Hold {
    holders: Holders,
    holder: String,
}

impl Holders {
    fn new(each: usize) -> Self {
        Self {
            counts: Arc::default(),
            each,
        }
    }

    fn hold(&self, holder: &str) -> Option<Hold> {
        let mut counts = self.counts.lock().expect("not poisoned");
        let count = counts.entry(holder.to_owned()).or_default();
        if *count >= self.each {
            return None;
        }
        *count += 1;
        Some(Hold {
            holders: self.clone(),
            holder: holder.to_owned(),
        })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut counts = self.holders.counts.lock().expect("not poisoned");
        if let Some(count) = counts.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.holder);
            }
        }
    }
}

/// How slowly an upload may arrive. Each one holds an upload slot (and a temporary file):
/// a client trickling bytes would hold it for ever. A phone on a poor line sends well over
/// 16 KiB/s; a 100 MiB video at that pace takes under two hours, and at the cap's end the
/// slot is free again.
#[derive(Debug)]
pub struct Pace {
    started: Instant,
    received: u64,
}

/// The longest silence between two pieces of an upload.
const MAX_SILENCE: Duration = Duration::from_secs(15);
/// Before this, any pace: a connection may start slowly.
const PACE_GRACE: Duration = Duration::from_secs(30);
/// The slowest average pace past the grace period, in bytes a second.
const MIN_BYTES_PER_SEC: u64 = 16 * 1024;

impl Pace {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            received: 0,
        }
    }

    /// The next item of `stream`, or a refusal when none comes within [`MAX_SILENCE`].
    async fn next<S: Stream + Unpin>(&self, stream: &mut S) -> Result<Option<S::Item>, ApiError> {
        tokio::time::timeout(MAX_SILENCE, stream.next())
            .await
            .map_err(|_| too_slow())
    }

    /// Counts bytes received; refuses an upload that has fallen below the slowest pace.
    fn count(&mut self, bytes: usize) -> Result<(), ApiError> {
        self.received += bytes as u64;
        let elapsed = self.started.elapsed();
        if elapsed > PACE_GRACE && self.received < MIN_BYTES_PER_SEC * elapsed.as_secs() {
            return Err(too_slow());
        }
        Ok(())
    }
}

fn too_slow() -> ApiError {
    ApiError::TooSlow(format!(
        "the upload is too slow: send at least {} KiB/s, with no pause over {} s",
        MIN_BYTES_PER_SEC / 1024,
        MAX_SILENCE.as_secs()
    ))
}

/// An uploaded file, in a temporary file removed when this is dropped.
pub struct Upload {
    file: NamedTempFile,
    head: Vec<u8>,
    pub size: u64,
}

/// A video container recognised by its signature.
#[derive(Debug, Clone, Copy)]
pub struct VideoKind {
    pub extension: &'static str,
    pub mime_type: &'static str,
}

impl Upload {
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// What the bytes are, judged by the container's signature, never by the file name;
    /// None when they are not a video.
    pub fn video_kind(&self) -> Option<VideoKind> {
        let kind = infer::get(&self.head)?;
        (kind.matcher_type() == infer::MatcherType::Video).then(|| VideoKind {
            extension: kind.extension(),
            mime_type: kind.mime_type(),
        })
    }
}

pub struct PublishForm {
    pub params: Params,
    pub data: Option<Upload>,
}

fn too_large(max_bytes: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "the video is larger than the limit of {} MiB",
        max_bytes / (1024 * 1024)
    ))
}

/// Reads the form; the query string's parameters win over the body's. `before_data` judges
/// the parameters that come before the file (the token, say): a refusal then answers before
/// the file is uploaded, rather than after megabytes of it.
pub async fn read<Judged>(
    req: &HttpRequest,
    mut multipart: Multipart,
    max_bytes: u64,
    before_data: impl FnOnce(Params) -> Judged,
) -> Result<PublishForm, ApiError>
where
    Judged: Future<Output = Result<(), ApiError>>,
{
    // A declared length over the cap (with room for the other fields) is refused unread.
    let room = (MAX_TEXT_FIELD * MAX_TEXT_FIELDS) as u64;
    if declared_length(req).is_some_and(|length| length > max_bytes + room) {
        return Err(too_large(max_bytes));
    }

    let mut pairs = query_pairs(req)?;
    let mut before_data = Some(before_data);
    let mut data = None;
    let mut text_fields = 0;
    let mut pace = Pace::new();
    while let Some(field) = pace.next(&mut multipart).await? {
        let mut field = field.map_err(malformed_multipart)?;
        let name = field.name().unwrap_or_default().to_owned();
        if name == "data" {
            if data.is_some() {
                return Err(ApiError::InvalidParameter("send one `data` file".into()));
            }
            if let Some(judge) = before_data.take() {
                judge(Params::from_pairs(pairs.iter().cloned())).await?;
            }
            data = Some(stream_to_file(&mut field, max_bytes, &mut pace).await?);
            continue;
        }
        text_fields += 1;
        if text_fields > MAX_TEXT_FIELDS {
            return Err(ApiError::InvalidParameter(format!(
                "the publish form has at most {MAX_TEXT_FIELDS} fields besides `data`"
            )));
        }
        let mut value = Vec::new();
        while let Some(chunk) = pace.next(&mut field).await? {
            let chunk = chunk.map_err(malformed_multipart)?;
            pace.count(chunk.len())?;
            value.extend_from_slice(&chunk);
            if value.len() > MAX_TEXT_FIELD {
                return Err(ApiError::InvalidParameter(format!(
                    "`{name}` is longer than {MAX_TEXT_FIELD} bytes"
                )));
            }
        }
        let value = String::from_utf8(value)
            .map_err(|_| ApiError::InvalidParameter(format!("`{name}` is not UTF-8 text")))?;
        pairs.push((name, value));
    }
    Ok(PublishForm {
        params: Params::from_pairs(pairs),
        data,
    })
}

async fn stream_to_file(
    field: &mut actix_multipart::Field,
    max_bytes: u64,
    pace: &mut Pace,
) -> Result<Upload, ApiError> {
    let file = NamedTempFile::new().map_err(ApiError::internal)?;
    let mut writer = tokio::fs::File::from_std(file.reopen().map_err(ApiError::internal)?);
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let mut size: u64 = 0;
    while let Some(chunk) = pace.next(field).await? {
        let chunk = chunk.map_err(malformed_multipart)?;
        pace.count(chunk.len())?;
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(too_large(max_bytes));
        }
        if head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        writer.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    writer.flush().await.map_err(ApiError::internal)?;
    Ok(Upload { file, head, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(address: &str) -> Sender {
        Sender::Anonymous(address.parse().unwrap())
    }

    #[test]
    fn anonymous_files_take_one_slot_per_network_and_users_a_few_each() {
        let slots = UploadSlots::new(10);
        let mut taken = vec![];
        let mut starts = |sender: Sender| {
            let mut slot = slots.take().unwrap();
            let started = slots.file_starts(&mut slot, sender).is_ok();
            if started {
                taken.push(slot);
            }
            started
        };
        assert!(starts(from("2001:db8:1:2::1")));
        assert!(!starts(from("2001:db8:1:2:ffff::9")), "the same /64");
        assert!(starts(from("2001:db8:1:3::1")));
        for address in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
            assert!(starts(from(address)));
        }
        assert!(
            !starts(from("203.0.113.4")),
            "half of the 10 slots are anonymous"
        );

        let ann = domain::UserId::try_from(7).unwrap();
        for _ in 0..UPLOADS_PER_USER {
            assert!(starts(Sender::User(ann)));
        }
        assert!(!starts(Sender::User(ann)), "{UPLOADS_PER_USER} at once");
    }

    #[test]
    fn what_an_upload_held_is_given_back_when_it_ends() {
        let slots = UploadSlots::new(2);
        let mut first = slots.take().unwrap();
        slots.file_starts(&mut first, from("203.0.113.1")).unwrap();
        drop(first);
        let mut again = slots.take().unwrap();
        assert!(slots.file_starts(&mut again, from("203.0.113.1")).is_ok());
    }
}
