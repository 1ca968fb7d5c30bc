//! Rate limits against the real Redis.

use std::net::IpAddr;
use std::time::Duration;

use domain::user::UserName;
use http_api::rate_limit::{Limit, Rate, RateLimitError, RateLimits, Subject};
use infra::settings::{secret, RateLimitSettings, RedisSettings};
use infra::testing::unique;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn redis_settings(url: &str) -> RedisSettings {
    RedisSettings {
        redis_url: secret(url),
        redis_key_prefix: unique(""),
    }
}

/// Limits under a key prefix of their own: `count` tries an hour for every limit.
async fn limits(url: &str, count: u32) -> RateLimits {
    let rate = Rate::new(count, Duration::from_secs(3600));
    let mut settings = RateLimitSettings::with_key_prefix(&unique("limits-"));
    settings.rate_limit_register = rate;
    settings.rate_limit_login = rate;
    settings.rate_limit_failed_login = rate;
    settings.rate_limit_write = rate;
    settings.rate_limit_publish = rate;
    let redis = infra::redis_store::connect(&redis_settings(url))
        .await
        .expect("Redis answers");
    RateLimits::new(redis, settings)
}

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn a_burst_is_allowed_then_refused_with_the_time_to_wait() {
    let limits = limits(&redis_url(), 3).await;
    let me = Subject::address(address("203.0.113.1"));
    for _ in 0..3 {
        limits.take(Limit::Register, &me).await.unwrap();
    }
    let refused = limits.take(Limit::Register, &me).await.unwrap_err();
    let RateLimitError::Limited { retry_after } = refused else {
        panic!("not a rate limit: {refused:?}");
    };
    // Three an hour: the next one in about twenty minutes.
    assert!(
        retry_after > Duration::from_secs(19 * 60) && retry_after <= Duration::from_secs(1200),
        "{retry_after:?}"
    );

    // Others, and other limits, are counted apart.
    let other = Subject::address(address("203.0.113.2"));
    limits.take(Limit::Register, &other).await.unwrap();
    limits.take(Limit::Login, &me).await.unwrap();
}

#[tokio::test]
async fn a_check_counts_nothing() {
    let limits = limits(&redis_url(), 2).await;
    let name = UserName::parse("owner").unwrap();
    let guesses = Subject::name_from(&name, address("198.51.100.9"));
    for _ in 0..10 {
        limits.check(Limit::FailedLogin, &guesses).await.unwrap();
    }
    limits.take(Limit::FailedLogin, &guesses).await.unwrap();
    limits.take(Limit::FailedLogin, &guesses).await.unwrap();
    assert!(matches!(
        limits.check(Limit::FailedLogin, &guesses).await,
        Err(RateLimitError::Limited { .. })
    ));
    // The same name from elsewhere: its owner is not locked out.
    let owner = Subject::name_from(&name, address("192.0.2.1"));
    limits.check(Limit::FailedLogin, &owner).await.unwrap();
}

#[tokio::test]
async fn rate_limits_off_allow_everything() {
    let redis = infra::redis_store::connect(&redis_settings(&redis_url()))
        .await
        .unwrap();
    let mut settings = RateLimitSettings::with_key_prefix(&unique("limits-")).off();
    settings.rate_limit_write = Rate::new(1, Duration::from_secs(3600));
    let limits = RateLimits::new(redis, settings);
    let user = Subject::address(address("203.0.113.5"));
    for _ in 0..5 {
        limits.take(Limit::Write, &user).await.unwrap();
    }
}

/// A Redis that refuses to count (here: a user that may run no script) fails sign-ups and
/// logins closed, and lets the writes of logged-in users through.
#[tokio::test]
async fn without_redis_sign_ups_are_refused_and_writes_go_on() {
    let admin = infra::redis_store::connect(&redis_settings(&redis_url()))
        .await
        .unwrap();
    let user = unique("no-scripts-");
    let () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            &user,
            "on",
            ">limits-test-password",
            "~*",
            "-@all",
            "+ping",
            "+hello",
            "+auth",
        ])
        .query_async(&mut admin.clone())
        .await
        .expect("Redis takes ACL users");
    let url = redis_url().replacen(
        "redis://",
        &format!("redis://{user}:limits-test-password@"),
        1,
    );
    let limits = limits(&url, 100).await;
    let me = Subject::address(address("203.0.113.7"));

    let register = limits.take(Limit::Register, &me).await;
    let login = limits.take(Limit::Login, &me).await;
    let write = limits.take(Limit::Write, &me).await;
    let () = redis::cmd("ACL")
        .arg(&["DELUSER", &user])
        .query_async(&mut admin.clone())
        .await
        .unwrap();
    assert!(
        matches!(register, Err(RateLimitError::Uncounted(_))),
        "{register:?}"
    );
    assert!(
        matches!(login, Err(RateLimitError::Uncounted(_))),
        "{login:?}"
    );
    assert!(write.is_ok(), "{write:?}");
}
