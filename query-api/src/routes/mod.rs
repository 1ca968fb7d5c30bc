mod assets;
mod user;

use actix_web::web;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(user::user_info)
        .service(assets::avatar)
        .service(assets::background);
}
