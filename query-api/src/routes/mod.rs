mod assets;
mod feed;
pub mod media;
mod openapi;
mod relations;
mod user;
mod videos;

use actix_web::web;
use domain::UserId;
use http_api::http::{method_not_allowed, ApiError};

use crate::reads::Reads;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(feed::feed)
        .service(user::user_info)
        .service(videos::published)
        .service(videos::liked)
        .service(videos::comments)
        .service(relations::following)
        .service(relations::followers)
        .service(relations::friends)
        .service(relations::chat)
        .service(assets::avatar)
        .service(assets::background)
        .service(assets::cover)
        .service(openapi::document)
        .service(
            web::resource("/media/{key:.*}")
                .route(web::get().to(media::media))
                .route(web::head().to(media::media))
                .default_service(web::to(method_not_allowed)),
        );
}

/// Refuses lists of users that are not registered.
async fn existing_user(reads: &Reads, viewer: UserId, user: UserId) -> Result<(), ApiError> {
    reads
        .user(Some(viewer), user)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::NotFound(format!("user {user} does not exist")))
}
