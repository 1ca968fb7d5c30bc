mod user;

use actix_web::web;

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(user::register).service(user::login);
}
