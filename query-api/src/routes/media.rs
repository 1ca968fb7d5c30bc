//! Stored videos and covers, streamed from the media store, with byte ranges: the client's
//! player seeks by asking for `Range: bytes=...` and expects 206 answers.

use actix_web::http::header::{
    self, ByteRangeSpec, CacheControl, CacheDirective, ContentRange, ContentRangeSpec, Header,
};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::TryStreamExt;
use http_api::http::{not_found, ApiError};
use http_api::media::MediaStore;
use object_store::GetRange;

use crate::reads::ReadError;

/// Keys are made by the server (`videos/<id>.<ext>`, `covers/<id>.jpg`): anything else is
/// not ours to serve.
fn is_media_key(key: &str) -> bool {
    let Some((folder, file)) = key.split_once('/') else {
        return false;
    };
    let Some((id, extension)) = file.split_once('.') else {
        return false;
    };
    matches!(folder, "videos" | "covers")
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && !extension.is_empty()
        && extension.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub async fn media(
    req: HttpRequest,
    key: web::Path<String>,
    store: web::Data<MediaStore>,
) -> Result<HttpResponse, ApiError> {
    let key = key.into_inner();
    let missing = || not_found(&format!("no media at {key}"));
    if !is_media_key(&key) {
        return Ok(missing());
    }
    let Some(size) = store.size(&key).await.map_err(ReadError::from)? else {
        return Ok(missing());
    };

    let requested = match header::Range::parse(&req) {
        Ok(header::Range::Bytes(specs)) if specs.len() == 1 => Some(specs[0].clone()),
        // Several ranges, or a unit we do not know: the whole object (RFC 9110 allows it).
        _ => None,
    };
    let range = match requested.map(|spec: ByteRangeSpec| spec.to_satisfiable_range(size)) {
        Some(Some(range)) => Some(range),
        Some(None) => {
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header(ContentRange(ContentRangeSpec::Bytes {
                    range: None,
                    instance_length: Some(size),
                }))
                .finish())
        }
        None => None,
    };

    let bounds = range.map(|(first, last)| GetRange::Bounded(first..last + 1));
    let Some(object) = store.get(&key, bounds).await.map_err(ReadError::from)? else {
        return Ok(missing());
    };
    let mut response = match range {
        Some((first, last)) => {
            let mut partial = HttpResponse::PartialContent();
            partial.insert_header(ContentRange(ContentRangeSpec::Bytes {
                range: Some((first, last)),
                instance_length: Some(size),
            }));
            partial
        }
        None => HttpResponse::Ok(),
    };
    let length = object.range.end - object.range.start;
    let body = object.into_stream().map_err(ReadError::from);
    Ok(response
        .content_type(mime_guess::from_path(&key).first_or_octet_stream().as_ref())
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        // Keys never change what they hold.
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(31_536_000),
        ]))
        .no_chunking(length)
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::is_media_key;

    #[test]
    fn only_keys_the_server_makes_are_served() {
        assert!(is_media_key("videos/12.mp4"));
        assert!(is_media_key("covers/12.jpg"));
        for key in [
            "../etc/passwd",
            "videos/../x.mp4",
            "videos/a.mp4",
            "other/1.mp4",
            "videos/1",
        ] {
            assert!(!is_media_key(key), "{key}");
        }
    }
}
