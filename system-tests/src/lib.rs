//! A whole backend for one test: command API (with its relay), projector and query API, each
//! on its own port, over databases, topics and Redis keys of the test's own.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use infra::settings::PublicSettings;
use infra::testing::{unique, TestSettings};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The base of the URLs the stack hands out; [`TestStack::fetch`] maps it to the query API.
pub const PUBLIC_BASE_URL: &str = "http://douyin.test";

const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

pub struct TestStack {
    pub settings: TestSettings,
    pub command_url: String,
    pub query_url: String,
    pub http: reqwest::Client,
    pub event_store: PgPool,
    pub read_store: PgPool,
    stop_projector: CancellationToken,
}

impl TestStack {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A stack whose settings `adjust` changes first (a smaller upload cap, say).
    pub async fn spawn_with(adjust: impl FnOnce(&mut TestSettings)) -> Self {
        infra::telemetry::init();
        let mut settings = TestSettings::new().await;
        adjust(&mut settings);
        let public = PublicSettings {
            public_base_url: PUBLIC_BASE_URL.to_owned(),
        };

        let command = command_api::startup::Application::build(command_api::settings::Settings {
            listen: LOCAL,
            event_store: settings.event_store.clone(),
            kafka: settings.kafka.clone(),
            auth: settings.auth.clone(),
            relay: command_api::settings::RelaySettings { outbox_relay: true },
            media: settings.media.clone(),
            redis: settings.redis.clone(),
            public: public.clone(),
        })
        .await
        .expect("the command API starts");
        let command_url = format!("http://127.0.0.1:{}", command.port());
        tokio::spawn(command.run_until_stopped());

        let projector = projector::startup::Projector::build(projector::settings::Settings {
            kafka: settings.kafka.clone(),
            read_store: settings.read_store.clone(),
            redis: settings.redis.clone(),
            group: projector::settings::GroupSettings {
                projector_group: unique("projector-"),
            },
        })
        .await
        .expect("the projector starts");
        let stop_projector = CancellationToken::new();
        tokio::spawn(projector.run(stop_projector.clone()));

        let query = query_api::startup::Application::build(query_api::settings::Settings {
            listen: LOCAL,
            read_store: settings.read_store.clone(),
            redis: settings.redis.clone(),
            auth: settings.auth.clone(),
            public,
            media: settings.media.clone(),
        })
        .await
        .expect("the query API starts");
        let query_url = format!("http://127.0.0.1:{}", query.port());
        tokio::spawn(query.run_until_stopped());

        let event_store =
            PgPool::connect(infra::settings::expose(&settings.event_store.database_url))
                .await
                .expect("the event store answers");
        let read_store = PgPool::connect(infra::settings::expose(
            &settings.read_store.read_database_url,
        ))
        .await
        .expect("the read store answers");
        Self {
            settings,
            command_url,
            query_url,
            http: reqwest::Client::new(),
            event_store,
            read_store,
            stop_projector,
        }
    }

    /// POSTs to the command API with the parameters in the query string, as the client does.
    pub async fn command(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.command_url))
            .query(params)
            .send()
            .await
            .expect("the command API answers");
        json_of(response).await
    }

    pub async fn query(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.query_url))
            .query(params)
            .send()
            .await
            .expect("the query API answers");
        json_of(response).await
    }

    pub async fn register(&self, name: &str, password: &str) -> Value {
        self.command(
            "/douyin/user/register/",
            &[("username", name), ("password", password)],
        )
        .await
    }

    /// Registers a user that must be accepted; returns its id and token.
    pub async fn registered(&self, name: &str, password: &str) -> (i64, String) {
        let reply = self.register(name, password).await;
        assert_eq!(reply["status_code"], 0, "registration refused: {reply}");
        (
            reply["user_id"].as_i64().expect("user_id is a number"),
            reply["token"]
                .as_str()
                .expect("token is a string")
                .to_owned(),
        )
    }

    pub async fn user(&self, user_id: i64, token: &str) -> Value {
        self.query(
            "/douyin/user/",
            &[("user_id", &user_id.to_string()), ("token", token)],
        )
        .await
    }

    /// Polls the user info route until the user is readable; returns the reply and how long
    /// it took.
    pub async fn wait_for_user(&self, user_id: i64, token: &str) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let reply = self.user(user_id, token).await;
            if reply["status_code"] == 0 {
                return (reply, start.elapsed());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "user {user_id} not readable after 20 s: {reply}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub async fn count_events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.event_store)
            .await
            .expect("the event store answers")
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.stop_projector.cancel();
    }
}

async fn json_of(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("a body");
    serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("HTTP {status} answered with a body that is not JSON: {body:?}"))
}
