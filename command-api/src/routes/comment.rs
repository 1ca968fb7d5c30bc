use actix_web::{post, web, HttpResponse};
use domain::text::CommentText;
use domain::{CommentId, VideoId};
use http_api::auth::Tokens;
use http_api::rate_limit::RateLimits;

use super::writer;
use http_api::cards::{Cards, CommentCard};
use http_api::http::{done, ok, ApiError, Params};
use serde::Serialize;

use crate::comments::Comments;

#[derive(Serialize)]
struct Posted {
    comment: CommentCard,
}

#[post("/douyin/comment/action/")]
async fn comment(
    params: Params,
    tokens: web::Data<Tokens>,
    limits: web::Data<RateLimits>,
    comments: web::Data<Comments>,
    cards: web::Data<Cards>,
) -> Result<HttpResponse, ApiError> {
    let user = writer(&params, &tokens, &limits).await?;
    let video: VideoId = params.parse("video_id")?;
    match params.required("action_type")? {
        "1" => {
            let text = params.parse_with("comment_text", CommentText::parse)?;
            let content = text.to_string();
            let posted = comments.post(user, video, text).await?;
            // The commenter's card as the read models hold it now. The comment is already
            // accepted, so neither a user registered a moment ago (not there yet) nor a Redis
            // failure may turn this reply into an error: a client would post it again.
            let card = match cards.user(Some(user), user.get()).await {
                Ok(Some(card)) => card,
                Ok(None) => cards.new_user(user.get(), posted.author_name.as_str()),
                Err(error) => {
                    tracing::warn!(%error, "commenter's card unreadable; replying with a bare one");
                    cards.new_user(user.get(), posted.author_name.as_str())
                }
            };
            Ok(ok(Posted {
                comment: CommentCard {
                    id: posted.id.get(),
                    user: card,
                    content,
                    create_date: cards.comment_date(posted.at),
                },
            }))
        }
        "2" => {
            let comment: CommentId = params.parse("comment_id")?;
            comments.delete(user, video, comment).await?;
            Ok(done())
        }
        other => Err(ApiError::InvalidParameter(format!(
            "`action_type` must be 1 (post) or 2 (delete), not {other:?}"
        ))),
    }
}
