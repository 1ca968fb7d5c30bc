//! A whole backend for one test: command API (with its relay), projector and query API, each
//! on its own port, over databases, topics and Redis keys of the test's own.

pub mod leftovers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use infra::settings::PublicSettings;
use infra::testing::{unique, TestSettings};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

fn projector_settings(settings: &TestSettings, group: &str) -> projector::settings::Settings {
    projector::settings::Settings {
        listen: LOCAL,
        kafka: settings.kafka.clone(),
        read_store: settings.read_store.clone(),
        redis: settings.redis.clone(),
        group: projector::settings::GroupSettings {
            projector_group: group.to_owned(),
            projector_instance_id: None,
        },
    }
}

fn query_settings(settings: &TestSettings) -> query_api::settings::Settings {
    query_api::settings::Settings {
        listen: LOCAL,
        read_store: settings.read_store.clone(),
        redis: settings.redis.clone(),
        auth: settings.auth.clone(),
        public: PublicSettings::new(PUBLIC_BASE_URL),
        media: settings.media.clone(),
        proxies: Default::default(),
        read_after_write: settings.read_after_write.clone(),
    }
}

/// Starts a command API (with its relay) over `settings`; returns its URL.
async fn spawn_command_api(settings: &TestSettings) -> String {
    let command = command_api::startup::Application::build(command_api::settings::Settings {
        listen: LOCAL,
        event_store: settings.event_store.clone(),
        kafka: settings.kafka.clone(),
        auth: settings.auth.clone(),
        relay: Default::default(),
        media: settings.media.clone(),
        redis: settings.redis.clone(),
        public: PublicSettings::new(PUBLIC_BASE_URL),
        passwords: settings.passwords.clone(),
        rate_limits: settings.rate_limits.clone(),
        proxies: Default::default(),
        read_after_write: settings.read_after_write.clone(),
        read_store: settings.read_store.clone(),
    })
    .await
    .expect("the command API starts");
    let url = format!("http://127.0.0.1:{}", command.port());
    tokio::spawn(command.run_until_stopped());
    url
}

/// A projector running in the test's process.
struct RunningProjector {
    /// Where its `/metrics` and `/readyz` answer.
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts a projector of consumer group `group`.
async fn spawn_projector(settings: &TestSettings, group: &str) -> RunningProjector {
    let projector = projector::startup::Projector::build(projector_settings(settings, group))
        .await
        .expect("the projector starts");
    let url = format!("http://127.0.0.1:{}", projector.port());
    let stop = CancellationToken::new();
    let task = tokio::spawn(projector.run(stop.clone()));
    RunningProjector { url, stop, task }
}

/// Starts a query API; returns its URL.
async fn spawn_query_api(settings: &TestSettings) -> String {
    let query = query_api::startup::Application::build(query_settings(settings))
        .await
        .expect("the query API starts");
    let url = format!("http://127.0.0.1:{}", query.port());
    tokio::spawn(query.run_until_stopped());
    url
}

/// A second command API, projector (of the same group) and query API beside a stack's.
pub struct Replicas {
    pub command_url: String,
    pub query_url: String,
    stop_projector: CancellationToken,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        self.stop_projector.cancel();
    }
}

/// The base of the URLs the stack hands out; [`TestStack::fetch`] maps it to the query API.
pub const PUBLIC_BASE_URL: &str = "http://douyin.test";

const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

pub struct TestStack {
    pub settings: TestSettings,
    pub command_url: String,
    pub query_url: String,
    /// Where the projector's `/metrics` and `/readyz` answer.
    pub projector_url: String,
    pub http: reqwest::Client,
    pub event_store: PgPool,
    pub read_store: PgPool,
    /// The projector's consumer group.
    pub projector_group: String,
    stop_projector: CancellationToken,
    projector: Option<RunningProjector>,
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
        let command_url = spawn_command_api(&settings).await;
        let projector_group = unique("projector-");
        let projector = spawn_projector(&settings, &projector_group).await;
        let query_url = spawn_query_api(&settings).await;

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
            projector_url: projector.url.clone(),
            http: reqwest::Client::new(),
            event_store,
            read_store,
            projector_group,
            stop_projector: projector.stop.clone(),
            projector: Some(projector),
        }
    }

    /// Starts a second command API, projector (sharing the partitions with the first) and
    /// query API over the same stores.
    pub async fn spawn_replicas(&self) -> Replicas {
        let command_url = spawn_command_api(&self.settings).await;
        let projector = spawn_projector(&self.settings, &self.projector_group).await;
        let query_url = spawn_query_api(&self.settings).await;
        Replicas {
            command_url,
            query_url,
            stop_projector: projector.stop,
        }
    }

    /// The settings of the stack's projector, for its operator commands.
    pub fn projector_settings(&self) -> projector::settings::Settings {
        projector_settings(&self.settings, &self.projector_group)
    }

    /// The settings of the stack's query API, for another one beside it.
    pub fn query_settings(&self) -> query_api::settings::Settings {
        query_settings(&self.settings)
    }

    /// The settings `make verify` would read for this stack.
    pub fn verify_settings(&self) -> verify::Settings {
        verify::Settings {
            event_store: self.settings.event_store.clone(),
            read_store: self.settings.read_store.clone(),
            redis: self.settings.redis.clone(),
            kafka: self.settings.kafka.clone(),
            group: verify::GroupSettings {
                projector_group: self.projector_group.clone(),
                projector_instance_id: None,
            },
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

    /// Registers user number `i` of a test (`user<i>`); returns its id and token.
    pub async fn registered_named(&self, i: usize) -> (i64, String) {
        self.registered(&format!("user{i}"), "password1").await
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

    /// Publishes `bytes` as a video through the multipart form the client sends.
    pub async fn publish(&self, token: &str, title: &str, bytes: Vec<u8>) -> Value {
        let form = reqwest::multipart::Form::new()
            .text("token", token.to_owned())
            .text("title", title.to_owned())
            .part(
                "data",
                reqwest::multipart::Part::bytes(bytes).file_name("upload.mp4"),
            );
        let response = self
            .http
            .post(format!("{}/douyin/publish/action/", self.command_url))
            .multipart(form)
            .send()
            .await
            .expect("the command API answers");
        json_of(response).await
    }

    /// Publishes the sample clip and waits until it is in `author`'s publish list; returns
    /// the video as listed.
    pub async fn published(&self, author: i64, token: &str, title: &str) -> Value {
        let reply = self.publish(token, title, sample_video()).await;
        assert_eq!(reply["status_code"], 0, "publish refused: {reply}");
        let list = self
            .eventually(
                "/douyin/publish/list/",
                &[("user_id", &author.to_string()), ("token", token)],
                |reply| {
                    reply["video_list"]
                        .as_array()
                        .is_some_and(|list| list.iter().any(|v| v["title"] == title))
                },
            )
            .await;
        list["video_list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|video| video["title"] == title)
            .unwrap()
            .clone()
    }

    /// Polls a read until `holds` is true of its reply (10 s at most); returns the reply.
    pub async fn eventually(
        &self,
        path: &str,
        params: &[(&str, &str)],
        holds: impl Fn(&Value) -> bool,
    ) -> Value {
        let holds = &holds;
        polled(|| async move {
            let reply = self.query(path, params).await;
            if holds(&reply) {
                Ok(reply)
            } else {
                Err(format!(
                    "{path} never showed what was expected; last reply: {reply}"
                ))
            }
        })
        .await
    }

    /// Polls a user's card (as `token`'s holder sees it) until `holds` is true of it (10 s
    /// at most); returns the card. Counters are in Redis, made after the Postgres lists of the
    /// same events: a list that shows an event does not mean the counts do yet.
    pub async fn user_eventually(
        &self,
        user_id: i64,
        token: &str,
        holds: impl Fn(&Value) -> bool,
    ) -> Value {
        let user_id = user_id.to_string();
        let reply = self
            .eventually(
                "/douyin/user/",
                &[("user_id", &user_id), ("token", token)],
                |reply| holds(&reply["user"]),
            )
            .await;
        reply["user"].clone()
    }

    /// GETs a URL the stack handed out, from the query API.
    pub async fn fetch(&self, url: &str, range: Option<&str>) -> reqwest::Response {
        let path = url
            .strip_prefix(PUBLIC_BASE_URL)
            .unwrap_or_else(|| panic!("{url} is not under {PUBLIC_BASE_URL}"));
        let mut request = self.http.get(format!("{}{path}", self.query_url));
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        request.send().await.expect("the query API answers")
    }

    /// Files under the media folder: what the media store holds.
    pub fn stored_objects(&self) -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.push(path);
                }
            }
        }
        let mut found = vec![];
        walk(&self.settings.media.media_dir, &mut found);
        found
    }

    pub async fn count_events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.event_store)
            .await
            .expect("the event store answers")
    }

    /// Waits (10 s at most) until the Postgres read models have applied every stored event of
    /// `aggregate_type`: from then on, only the Redis side of the last batch may still be on
    /// its way, and counts read no longer move but to their final value.
    pub async fn projected_all(&self, aggregate_type: &str) {
        polled(|| async {
            let stored: i64 =
                sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
                    .bind(aggregate_type)
                    .fetch_one(&self.event_store)
                    .await
                    .expect("the event store answers");
            // An aggregate's events are numbered from 1 without a gap, and applied in order.
            let applied: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(sequence), 0)::bigint FROM applied_sequences
                  WHERE aggregate_type = $1",
            )
            .bind(aggregate_type)
            .fetch_one(&self.read_store)
            .await
            .expect("the read store answers");
            if applied == stored {
                Ok(())
            } else {
                Err(format!(
                    "{applied} of {stored} {aggregate_type} events applied"
                ))
            }
        })
        .await
    }
}

/// Polls `attempt` until it gives `Ok` (10 s at most); returns what it gave. Past the time,
/// panics with its last `Err`: what was seen instead.
pub async fn polled<T, F, Fut>(mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(seen) => assert!(start.elapsed() < Duration::from_secs(10), "{seen}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl TestStack {
    /// Stops the stack's projector: nothing is projected from now on.
    pub fn stop_projector(&self) {
        self.stop_projector.cancel();
    }

    /// Stops the stack's projector and waits until it has committed what it applied and
    /// left its group.
    pub async fn projector_stopped(&mut self) {
        self.stop_projector.cancel();
        if let Some(projector) = self.projector.take() {
            projector
                .task
                .await
                .expect("the projector did not panic")
                .expect("the projector stopped cleanly");
        }
    }

    /// Starts the stack's projector again (after [`Self::projector_stopped`]), in the same
    /// consumer group: it goes on from the offsets the group committed.
    pub async fn start_projector(&mut self) {
        let projector = spawn_projector(&self.settings, &self.projector_group).await;
        self.projector_url = projector.url.clone();
        self.stop_projector = projector.stop.clone();
        self.projector = Some(projector);
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.stop_projector.cancel();
    }
}

/// A one-second MP4 made with ffmpeg (`testsrc`, 160x120).
pub fn sample_video() -> Vec<u8> {
    include_bytes!("../fixtures/clip.mp4").to_vec()
}

async fn json_of(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("a body");
    serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("HTTP {status} answered with a body that is not JSON: {body:?}"))
}
