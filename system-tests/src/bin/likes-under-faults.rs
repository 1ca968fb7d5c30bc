//! Likes under faults, against a running stack that `scripts/faults.sh` keeps breaking: users
//! toggle their like of one video for a while, each repeating a request until it is answered
//! (a like or unlike repeated is harmless), while services are killed and restarted and Redis
//! loses its data. Then every read must come to agree with the last answered action of every
//! user: the video's `favorite_count`, the author's `total_favorited`, and each user's
//! favorite list. Exits non-zero if they do not within a minute.
//!
//!     likes-under-faults [BASE_URL (http://127.0.0.1:8080)] [USERS (40)] [SECONDS (40)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(60);

/// Users toggle their like of one video while `make faults` breaks the stack; then every read
/// must agree with every answered write (exit status 1 if not within a minute).
#[derive(clap::Parser)]
struct Cli {
    /// The client API.
    #[arg(default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Users liking at once.
    #[arg(default_value_t = 40)]
    users: usize,
    /// How long they like for.
    #[arg(default_value_t = 40)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        base_url: base,
        users,
        seconds,
    } = clap::Parser::parse();
    // Requests are repeated until answered: a stack that never comes back must not keep this
    // running forever.
    let limit = Duration::from_secs(seconds) + Duration::from_secs(300);
    tokio::time::timeout(limit, run(base, users, seconds))
        .await
        .map_err(|_| anyhow::anyhow!("no verdict within {} s", limit.as_secs()))?
}

async fn run(base: String, users: usize, seconds: u64) -> anyhow::Result<()> {
    let client = Client {
        // Longer than any answer takes: a request given up on while the server still works on
        // it could be carried out after a later one, and the check would blame the server.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(100))
            .build()?,
        base,
        retries: AtomicUsize::new(0),
        unavailable: AtomicUsize::new(0),
        internal: AtomicUsize::new(0),
        slowest_ms: AtomicUsize::new(0),
    };
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );

    let mut accounts = vec![];
    for i in 0..users {
        let name = format!("fault-{run}-{i}");
        let reply = client
            .answered(
                "/douyin/user/register/",
                &[("username", &name), ("password", "secret")],
            )
            .await;
        // A registration answered with an error after a restart may have been made: log in.
        let reply = if reply["status_code"] == 0 {
            reply
        } else {
            client
                .answered(
                    "/douyin/user/login/",
                    &[("username", &name), ("password", "secret")],
                )
                .await
        };
        anyhow::ensure!(reply["status_code"] == 0, "{name}: {reply}");
        let token = reply["token"].as_str().unwrap_or_default().to_owned();
        accounts.push((reply["user_id"].as_i64().unwrap_or_default(), token));
    }
    let (author, author_token) = accounts[0].clone();
    let title = format!("faults {run}");
    let video_id = client.publish(&author_token, &title).await?;
    println!("{users} users, video {video_id}: toggling likes for {seconds} s");

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let video = video_id.to_string();
    let finals = futures::future::join_all(accounts.iter().enumerate().map(|(i, (_, token))| {
        let (client, video) = (&client, &video);
        async move {
            let mut liked = false;
            let mut answered = 0_usize;
            while Instant::now() < deadline {
                let action = if liked { "2" } else { "1" };
                let params = [
                    ("token", token.as_str()),
                    ("video_id", video.as_str()),
                    ("action_type", action),
                ];
                let reply = client.answered("/douyin/favorite/action/", &params).await;
                if reply["status_code"] == 0 {
                    liked = !liked;
                    answered += 1;
                }
                // Users at different paces, so that likes and unlikes interleave.
                tokio::time::sleep(Duration::from_millis(20 + (i as u64 % 7) * 15)).await;
            }
            (liked, answered)
        }
    }))
    .await;
    let expected = finals.iter().filter(|(liked, _)| *liked).count();
    let answered: usize = finals.iter().map(|(_, answered)| answered).sum();
    println!(
        "{answered} likes and unlikes answered ({} requests repeated after a failure, {} of them answered \"unavailable, try again\" and {} \"internal error\"; the slowest in {} ms); {expected} users end liking",
        client.retries.load(Ordering::Relaxed),
        client.unavailable.load(Ordering::Relaxed),
        client.internal.load(Ordering::Relaxed),
        client.slowest_ms.load(Ordering::Relaxed)
    );

    // The projector may still be catching up (it was killed last, say): a count passes through
    // the expected value on its way, so every read is checked again until all agree at once.
    let started = Instant::now();
    loop {
        let disagreeing = client
            .disagreements(
                author,
                &author_token,
                video_id,
                &accounts,
                &finals,
                expected,
            )
            .await;
        if disagreeing.is_empty() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < SETTLE,
            "reads never agreed with the answered writes: {}",
            disagreeing.join(", ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "PASS: every read agrees with every answered write, {:.1} s after the last one",
        started.elapsed().as_secs_f64()
    );
    let internal = client.internal.load(Ordering::Relaxed);
    anyhow::ensure!(
        internal == 0,
        "{internal} writes were answered \"internal error\" instead of \"unavailable, try again\""
    );
    Ok(())
}

struct Client {
    http: reqwest::Client,
    base: String,
    retries: AtomicUsize,
    /// Answers "unavailable, try again" (503 in the envelope): what a write meeting a
    /// dependency that restarts is to get.
    unavailable: AtomicUsize,
    /// Answers "internal error" (500 in the envelope, or a bare one from the service): a
    /// fault this run must not see.
    internal: AtomicUsize,
    slowest_ms: AtomicUsize,
}

impl Client {
    /// What the reads say that the answered writes do not.
    async fn disagreements(
        &self,
        author: i64,
        author_token: &str,
        video_id: i64,
        accounts: &[(i64, String)],
        finals: &[(bool, usize)],
        expected: usize,
    ) -> Vec<String> {
        let mut disagreeing = vec![];
        let author_id = author.to_string();
        let params = [("user_id", author_id.as_str()), ("token", author_token)];
        let list = self.read("/douyin/publish/list/", &params).await;
        let count = &list["video_list"][0]["favorite_count"];
        if *count != expected {
            disagreeing.push(format!("favorite_count {count}, not {expected}"));
        }
        let user = self.read("/douyin/user/", &params).await;
        let total = &user["user"]["total_favorited"];
        if *total != expected {
            disagreeing.push(format!("total_favorited {total}, not {expected}"));
        }
        for ((user, token), (liked, answered)) in accounts.iter().zip(finals) {
            let user = user.to_string();
            let list = self
                .read(
                    "/douyin/favorite/list/",
                    &[("user_id", &user), ("token", token)],
                )
                .await;
            let listed = list["video_list"]
                .as_array()
                .is_some_and(|videos| videos.iter().any(|v| v["id"] == video_id));
            if listed != *liked {
                disagreeing.push(format!(
                    "user {user} (liking: {liked} after {answered} answered, listed: {listed})"
                ));
            }
        }
        disagreeing
    }

    /// Posts until the API answers with its envelope (a refusal included), riding out
    /// restarts: connection errors and the proxy's 5xx answers.
    async fn answered(&self, path: &str, params: &[(&str, &str)]) -> Value {
        loop {
            let sent = Instant::now();
            let reply = self
                .http
                .post(format!("{}{path}", self.base))
                .query(params)
                .send()
                .await;
            self.slowest_ms
                .fetch_max(sent.elapsed().as_millis() as usize, Ordering::Relaxed);
            if let Ok(reply) = reply {
                if let Ok(value) = reply.json::<Value>().await {
                    let code = value["status_code"].as_i64().unwrap_or(-1);
                    if !(500..600).contains(&code) {
                        return value;
                    }
                    match code {
                        503 => &self.unavailable,
                        _ => &self.internal,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                }
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads until the query API answers.
    async fn read(&self, path: &str, params: &[(&str, &str)]) -> Value {
        loop {
            let reply = self
                .http
                .get(format!("{}{path}", self.base))
                .query(params)
                .send()
                .await;
            if let Ok(reply) = reply {
                if let Ok(value) = reply.json::<Value>().await {
                    if value["status_code"] == 0 {
                        return value;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn publish(&self, token: &str, title: &str) -> anyhow::Result<i64> {
        loop {
            let form = reqwest::multipart::Form::new()
                .text("token", token.to_owned())
                .text("title", title.to_owned())
                .part(
                    "data",
                    reqwest::multipart::Part::bytes(
                        include_bytes!("../../fixtures/clip.mp4").to_vec(),
                    )
                    .file_name("clip.mp4"),
                );
            let sent = self
                .http
                .post(format!("{}/douyin/publish/action/", self.base))
                .multipart(form)
                .send()
                .await;
            if let Ok(reply) = sent {
                if let Ok(value) = reply.json::<Value>().await {
                    anyhow::ensure!(
                        value["status_code"] == 0 || value["status_code"] == 503,
                        "publish refused: {value}"
                    );
                    if value["status_code"] == 0 {
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let feed = loop {
            let feed = self.read("/douyin/feed/", &[]).await;
            if feed["video_list"][0]["title"] == title {
                break feed;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        feed["video_list"][0]["id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no id in {feed}"))
    }
}
