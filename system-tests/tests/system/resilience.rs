//! Dependencies that are unwell, or not what a service expected: the services go on where
//! they can, and say "unavailable" (never "does not exist", never a server error) where not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use infra::settings::{expose, secret};
use system_tests::{polled, sample_video, TestStack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A read replica takes no writes: a query API must start on one and serve from it, leaving
/// the schema to the projector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_api_starts_and_reads_on_a_read_only_replica_of_the_read_store() {
    let stack = TestStack::spawn().await;
    let (ann, token) = stack.registered("ann", "password1").await;
    stack.wait_for_user(ann, &token).await;

    let mut settings = stack.query_settings();
    // What a hot standby is to its clients: every transaction read-only.
    let url = expose(&settings.read_store.read_database_url);
    let separator = if url.contains('?') { '&' } else { '?' };
    settings.read_store.read_database_url = secret(&format!(
        "{url}{separator}options=-c%20default_transaction_read_only%3Don"
    ));
    let replica = query_api::startup::Application::build(settings)
        .await
        .expect("a query API starts on a read-only database");
    let replica_url = format!("http://127.0.0.1:{}", replica.port());
    tokio::spawn(replica.run_until_stopped());

    let reply: serde_json::Value = stack
        .http
        .get(format!("{replica_url}/douyin/relation/follower/list/"))
        .query(&[("user_id", ann.to_string().as_str()), ("token", &token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status_code"], 0, "{reply}");
    assert_eq!(reply["user_list"], serde_json::json!([]));
}

/// A Redis that restarted without its data has no read model until it is rebuilt: what it
/// lacks is "unavailable, try again" (HTTP 503), never "does not exist" or an empty feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_lost_its_read_models_reads_are_unavailable_not_missing() {
    let stack = &TestStack::spawn().await;
    let (ann, token) = stack.registered("ann", "password1").await;
    let video = stack.published(ann, &token, "a cat").await;
    let video_id = video["id"].to_string();
    // No projector rebuilds them in this test.
    stack.stop_projector();
    let redis = redis::Client::open(expose(&stack.settings.redis.redis_url)).unwrap();
    let mut redis = redis.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("{}*", stack.settings.redis.redis_key_prefix);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        !keys.is_empty(),
        "the stack's read models are under {pattern}"
    );
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();

    let ann_id = ann.to_string();
    let reads: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "/douyin/user/",
            vec![("user_id", &ann_id), ("token", &token)],
        ),
        ("/douyin/feed/", vec![]),
        ("/douyin/comment/list/", vec![("video_id", &video_id)]),
        (
            "/douyin/relation/follow/list/",
            vec![("user_id", &ann_id), ("token", &token)],
        ),
    ];
    for (path, params) in reads {
        let params = &params;
        // The query API's cached replies are dropped as Redis tells it of the deletion.
        let reply = polled(|| async move {
            let response = stack
                .http
                .get(format!("{}{path}", stack.query_url))
                .query(params)
                .send()
                .await
                .unwrap();
            let http = response.status().as_u16();
            let reply: serde_json::Value = response.json().await.unwrap();
            assert_ne!(reply["status_code"], 404, "{path} said it does not exist");
            if (http, reply["status_code"].as_i64()) == (503, Some(503)) {
                Ok(reply)
            } else {
                Err(format!("{path} answered HTTP {http}: {reply}"))
            }
        })
        .await;
        assert_eq!(
            reply["status_msg"], "the service is unavailable, please try again",
            "{path}"
        );
    }
}

/// Between the command API and Postgres: forwards everything, until armed; then cuts the
/// connection that sends a `VideoPublished` event right after forwarding its `COMMIT`, before
/// Postgres's answer comes back. Postgres commits; the command API sees its connection drop.
struct CommitCutter {
    address: std::net::SocketAddr,
    /// Postgres's `host:port`, set before the first connection.
    upstream: Arc<Mutex<String>>,
    armed: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
}

impl CommitCutter {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cutter = Self {
            address: listener.local_addr().unwrap(),
            upstream: Arc::default(),
            armed: Arc::default(),
            cut: Arc::default(),
        };
        let (upstream, armed, cut) = (
            cutter.upstream.clone(),
            cutter.armed.clone(),
            cutter.cut.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let address = upstream.lock().unwrap().clone();
                let server = TcpStream::connect(address).await.unwrap();
                tokio::spawn(Self::forward(client, server, armed.clone(), cut.clone()));
            }
        });
        cutter
    }

    /// `url` (a Postgres URL) through the cutter, which forwards to the server it names, in
    /// plain text (it reads what passes).
    fn route(&self, url: &str) -> String {
        // postgres://user:password@host:port/database?options
        let host = url.split('@').nth(1).unwrap().split('/').next().unwrap();
        *self.upstream.lock().unwrap() = host.to_owned();
        let separator = if url.contains('?') { '&' } else { '?' };
        let routed = url.replacen(host, &self.address.to_string(), 1);
        format!("{routed}{separator}sslmode=disable")
    }

    async fn forward(
        client: TcpStream,
        server: TcpStream,
        armed: Arc<AtomicBool>,
        cut: Arc<AtomicBool>,
    ) {
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        let silenced = Arc::new(AtomicBool::new(false));
        // Told when Postgres has answered the commit (which the client never hears).
        let committed = Arc::new(tokio::sync::Notify::new());
        let (quiet, answered) = (silenced.clone(), committed.clone());
        let answers = tokio::spawn(async move {
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let read = from_server.read(&mut buffer).await.unwrap_or(0);
                if quiet.load(Ordering::SeqCst) {
                    answered.notify_one();
                    return;
                }
                if read == 0 || to_client.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
        });
        let mut buffer = vec![0; 64 * 1024];
        let mut publishing = false;
        loop {
            let read = from_client.read(&mut buffer).await.unwrap_or(0);
            if read == 0 {
                break;
            }
            let sent = &buffer[..read];
            let contains = |needle: &[u8]| sent.windows(needle.len()).any(|w| w == needle);
            publishing |= armed.load(Ordering::SeqCst) && contains(b"VideoPublished");
            let commit = publishing && contains(b"COMMIT") && !cut.swap(true, Ordering::SeqCst);
            if commit {
                silenced.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(sent).await.is_err() {
                break;
            }
            if commit {
                // Postgres has committed once it answers; the answer never comes back.
                committed.notified().await;
                break;
            }
        }
        answers.abort();
    }
}

/// The connection drops after Postgres committed a publish and before its answer: the video
/// is published (its event is relayed to the feed), so its media must stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_commit_answer_was_lost_keeps_its_media() {
    let cutter = CommitCutter::start().await;
    let stack = TestStack::spawn_with(|settings| {
        let url = cutter.route(expose(&settings.event_store.database_url));
        settings.event_store.database_url = secret(&url);
    })
    .await;
    let (ann, token) = stack.registered("ann", "password1").await;

    cutter.armed.store(true, Ordering::SeqCst);
    let reply = stack.publish(&token, "kept", sample_video()).await;
    assert!(
        cutter.cut.load(Ordering::SeqCst),
        "the commit's answer was cut"
    );
    assert_eq!(reply["status_code"], 0, "the publish committed: {reply}");
    let video = stack.published(ann, &token, "kept").await;
    for url in [&video["play_url"], &video["cover_url"]] {
        let response = stack.fetch(url.as_str().unwrap(), None).await;
        assert_eq!(response.status(), 200, "{url} is gone");
    }
}

/// A projector stopped and started again goes on from the first message it had not applied:
/// every write made while it was down shows once it is back, none skipped. (The offset it
/// stores is the next one to read: storing one more skipped a message per partition at each
/// restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_started_again_applies_every_write_made_while_it_was_down() {
    let mut stack = TestStack::spawn_with(|settings| {
        settings.read_after_write.read_after_write_wait_ms = 100;
    })
    .await;
    // Enough users that every partition of the topic has events the projector applied
    // before it stopped, and events after.
    for i in 0..9 {
        stack.registered_named(i).await;
    }
    stack.projector_stopped().await;
    let mut while_down = vec![];
    for i in 9..18 {
        while_down.push(stack.registered_named(i).await);
    }
    stack.start_projector().await;
    for (user_id, token) in &while_down {
        let card = stack
            .user_eventually(*user_id, token, |user| user["id"] == *user_id)
            .await;
        assert_eq!(card["id"], *user_id, "{card}");
    }
}
