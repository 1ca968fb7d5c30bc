use actix_multipart::Multipart;
use actix_web::{post, web, HttpRequest, HttpResponse};
use domain::text::Title;
use http_api::auth::Tokens;
use http_api::client;
use http_api::http::{done, ApiError, Params};
use http_api::rate_limit::{Limit, RateLimits, Subject};
use infra::settings::MediaSettings;

use crate::upload::{self, Sender, UploadSlots};
use crate::videos::Videos;

/// Every check is made before anything is stored: a refused upload leaves no object and no
/// event behind.
#[post("/douyin/publish/action/")]
async fn publish(
    req: HttpRequest,
    multipart: Multipart,
    tokens: web::Data<Tokens>,
    limits: web::Data<RateLimits>,
    settings: web::Data<MediaSettings>,
    videos: web::Data<Videos>,
    uploads: web::Data<UploadSlots>,
) -> Result<HttpResponse, ApiError> {
    let mut receiving = uploads.take()?;
    let address = client::address(&req);
    // A client whose token has expired, or who has published too much, learns it before
    // uploading the video; one that sends its token after the file uploads it on the
    // allowance of anonymous uploads.
    let judge = {
        let (tokens, limits, uploads, slot) = (&tokens, &limits, &uploads, &mut receiving);
        move |sent: Params| async move {
            let sender = if sent.get("token").is_some() {
                let author = sent.authenticated_user(tokens)?;
                limits.check(Limit::Publish, &Subject::user(author)).await?;
                Sender::User(author)
            } else {
                Sender::Anonymous(address)
            };
            uploads.file_starts(slot, sender)
        }
    };
    let form = upload::read(&req, multipart, settings.max_upload_bytes, judge).await?;
    let author = form.params.authenticated_user(&tokens)?;
    let title = form.params.parse_with("title", Title::parse)?;
    let data = form
        .data
        .ok_or_else(|| ApiError::InvalidParameter("`data` is required: the video file".into()))?;
    let kind = data.video_kind().ok_or_else(|| {
        ApiError::InvalidParameter("`data` is not a video (MP4, WebM, MKV, MOV, ...)".into())
    })?;
    // Only a publish that is carried out counts: a refused or busy one is given back.
    let publisher = Subject::user(author);
    limits.take(Limit::Publish, &publisher).await?;
    if let Err(error) = videos.publish(author, title, data.path(), kind).await {
        limits.give_back(Limit::Publish, &publisher).await;
        return Err(error.into());
    }
    Ok(done())
}
