//! Measures how long a write takes to show in the reads, against a running stack:
//!
//! - registrations: registers users one after another and polls the user info route until
//!   each is readable;
//! - likes: one user likes and unlikes a video in turn, and after each acknowledged write
//!   polls the favorite list until it shows the change;
//! - a burst: every registered user likes the video at once; how long until all are accepted,
//!   and until the video's count shows them all.
//!
//!     write-to-read [BASE_URL (http://127.0.0.1:8080)] [TRIES (100)]

use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a write takes to show in the reads, against a running stack.
#[derive(clap::Parser)]
struct Cli {
    /// The client API.
    #[arg(default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Registrations and likes measured.
    #[arg(default_value_t = 100)]
    tries: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        base_url: base,
        tries,
    } = clap::Parser::parse();
    let client = Client {
        http: reqwest::Client::new(),
        base,
    };
    let run = uuid_like();

    // A stack started a moment ago may still be joining its consumer group: not the normal
    // operation measured here.
    client.register(&format!("lag-{run}-warm-up")).await?;

    let mut lags = Vec::with_capacity(tries);
    let mut users = vec![];
    for i in 0..tries {
        let (id, token, lag) = client.register(&format!("lag-{run}-{i}")).await?;
        lags.push(lag);
        users.push((id, token));
    }
    report("register reply -> user readable", &mut lags);

    let (author_token, (liker, liker_token)) = (&users[0].1, &users[1 % users.len()]);
    let form = reqwest::multipart::Form::new()
        .text("token", author_token.clone())
        .text("title", format!("lag {run}"))
        .part(
            "data",
            reqwest::multipart::Part::bytes(include_bytes!("../../fixtures/clip.mp4").to_vec())
                .file_name("clip.mp4"),
        );
    let reply: Value = client
        .http
        .post(format!("{}/douyin/publish/action/", client.base))
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(reply["status_code"] == 0, "publish refused: {reply}");
    let feed = client
        .wait_until("/douyin/feed/", &[], |feed| {
            feed["video_list"][0]["title"] == format!("lag {run}")
        })
        .await?;
    let video_id = feed["video_list"][0]["id"].as_i64();
    let video = feed["video_list"][0]["id"].to_string();

    let mut lags = Vec::with_capacity(tries);
    for i in 0..tries {
        let like = i % 2 == 0;
        let action = if like { "1" } else { "2" };
        client
            .post(
                "/douyin/favorite/action/",
                &[
                    ("token", liker_token),
                    ("video_id", &video),
                    ("action_type", action),
                ],
            )
            .await?;
        let replied = Instant::now();
        client
            .wait_until(
                "/douyin/favorite/list/",
                &[("user_id", liker), ("token", liker_token)],
                |list| {
                    let listed = list["video_list"]
                        .as_array()
                        .is_some_and(|videos| videos.iter().any(|v| v["id"].as_i64() == video_id));
                    listed == like
                },
            )
            .await?;
        lags.push(replied.elapsed());
    }
    report("like/unlike reply -> favorite list shows it", &mut lags);

    // A burst: every user likes the video at once; how fast are the likes accepted, and
    // when does the count show them all?
    let started = Instant::now();
    let replies = futures::future::join_all(users.iter().map(|(_, token)| {
        let (client, video) = (&client, &video);
        async move {
            let params = [
                ("token", token.as_str()),
                ("video_id", video),
                ("action_type", "1"),
            ];
            client.post("/douyin/favorite/action/", &params).await
        }
    }))
    .await;
    let accepted = started.elapsed();
    for reply in replies {
        reply?;
    }
    let (author, author_token) = &users[0];
    client
        .wait_until(
            "/douyin/publish/list/",
            &[("user_id", author), ("token", author_token)],
            |list| list["video_list"][0]["favorite_count"] == users.len(),
        )
        .await?;
    let settled = started.elapsed();
    println!(
        "burst of {} simultaneous likes: all accepted in {:.0} ms ({:.0} likes/s), counted in {:.0} ms",
        users.len(),
        ms(accepted),
        users.len() as f64 / accepted.as_secs_f64(),
        ms(settled)
    );
    Ok(())
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// Registers `name`; returns its id and token, and how long after the reply the user
    /// became readable.
    async fn register(&self, name: &str) -> anyhow::Result<(String, String, Duration)> {
        let reply = self
            .post(
                "/douyin/user/register/",
                &[("username", name), ("password", "secret")],
            )
            .await?;
        let replied = Instant::now();
        let id = reply["user_id"].to_string();
        let token = reply["token"].as_str().unwrap_or_default().to_owned();
        self.wait_until(
            "/douyin/user/",
            &[("user_id", &id), ("token", &token)],
            |user| user["status_code"] == 0,
        )
        .await?;
        Ok((id, token, replied.elapsed()))
    }

    async fn post(&self, path: &str, params: &[(&str, &str)]) -> anyhow::Result<Value> {
        let reply: Value = self
            .http
            .post(format!("{}{path}", self.base))
            .query(params)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(reply["status_code"] == 0, "{path} refused: {reply}");
        Ok(reply)
    }

    async fn wait_until(
        &self,
        path: &str,
        params: &[(&str, &str)],
        holds: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            let reply: Value = self
                .http
                .get(format!("{}{path}", self.base))
                .query(params)
                .send()
                .await?
                .json()
                .await?;
            if holds(&reply) {
                return Ok(reply);
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "{path} never showed the write: {reply}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn report(what: &str, lags: &mut [Duration]) {
    lags.sort();
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}, over {} writes: median {:.1} ms, p90 {:.1} ms, worst {:.1} ms",
        lags.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0))
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    )
}
