//! The command API dies right after committing: its events still reach the broker, once.

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use infra::settings::expose;
use infra::testing::{read_topic, TestSettings};
use serde_json::Value;

struct CommandApi {
    child: Child,
    url: String,
}

impl CommandApi {
    /// Starts the real binary, as a separate process that can be killed.
    async fn start(settings: &TestSettings, relay: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_command-api"))
            .env("COMMAND_API_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", expose(&settings.event_store.database_url))
            .env("KAFKA_BROKERS", &settings.kafka.kafka_brokers)
            .env("KAFKA_TOPIC_PREFIX", &settings.kafka.kafka_topic_prefix)
            .env(
                "KAFKA_PARTITIONS",
                settings.kafka.kafka_partitions.to_string(),
            )
            .env("JWT_SECRET", expose(&settings.auth.jwt_secret))
            .env("OUTBOX_RELAY", relay.to_string())
            .spawn()
            .expect("the command API binary starts");
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while reqwest::get(format!("{url}/healthz")).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "command API did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, url }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    fn kill(self) {
        drop(self);
    }
}

impl Drop for CommandApi {
    /// Also when a test fails: the process must not outlive it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_crash_are_published_once_after_a_restart() {
    let settings = TestSettings::new().await;

    // A command API whose relay never gets to publish: it dies right after the commit.
    let api = CommandApi::start(&settings, false).await;
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/douyin/user/register/", api.url))
        .query(&[("username", "heidi"), ("password", "alpine")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status_code"], 0, "{reply}");
    let user_id = reply["user_id"].as_i64().unwrap().to_string();
    api.kill();

    let event_store = sqlx::PgPool::connect(expose(&settings.event_store.database_url))
        .await
        .unwrap();
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&event_store)
        .await
        .unwrap();
    assert_eq!(
        queued, 2,
        "the account and the user event wait in the outbox"
    );

    // The restarted command API publishes what the dead one committed.
    let api = CommandApi::start(&settings, true).await;
    let is_heidi = |event: &&infra::envelope::PublishedEvent| event.aggregate_id == user_id;
    let topic = format!("{}user", settings.kafka.kafka_topic_prefix);
    let users = read_topic(
        &settings.kafka,
        &topic,
        |events| events.iter().any(|e| e.aggregate_id == user_id),
        Duration::from_secs(30),
        Duration::from_secs(2),
    );
    let heidi: Vec<_> = users.iter().filter(is_heidi).collect();
    assert_eq!(heidi.len(), 1, "published exactly once: {users:?}");
    assert_eq!(heidi[0].event_type, "UserRegistered");
    assert_eq!(heidi[0].payload["name"], "heidi");
    assert_eq!(heidi[0].sequence, 1);

    let accounts = read_topic(
        &settings.kafka,
        &format!("{}account", settings.kafka.kafka_topic_prefix),
        |events| !events.is_empty(),
        Duration::from_secs(10),
        Duration::from_millis(500),
    );
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0].aggregate_id, "heidi");
    assert_eq!(accounts[0].payload["user_id"].to_string(), user_id);
    assert!(
        !accounts[0].payload.contains_key("password_hash"),
        "the password hash is never published"
    );

    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&event_store)
        .await
        .unwrap();
    assert_eq!(queued, 0, "published events leave the outbox");
    api.kill();
}
