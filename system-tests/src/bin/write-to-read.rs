//! Measures how long a write takes to show in the reads, against a running stack:
//! registers users one after another and polls the user info route until each is readable.
//!
//!     write-to-read [BASE_URL (http://127.0.0.1:8080)] [TRIES (100)]

use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let tries: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(100);
    let http = reqwest::Client::new();
    let run = uuid_like();

    let mut lags = Vec::with_capacity(tries);
    for i in 0..tries {
        let reply: Value = http
            .post(format!("{base}/douyin/user/register/"))
            .query(&[
                ("username", format!("lag-{run}-{i}")),
                ("password", "secret".into()),
            ])
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(reply["status_code"] == 0, "register refused: {reply}");
        let replied = Instant::now();
        let id = reply["user_id"].to_string();
        let token = reply["token"].as_str().unwrap_or_default().to_owned();
        loop {
            let user: Value = http
                .get(format!("{base}/douyin/user/"))
                .query(&[("user_id", &id), ("token", &token)])
                .send()
                .await?
                .json()
                .await?;
            if user["status_code"] == 0 {
                break;
            }
            anyhow::ensure!(
                replied.elapsed() < Duration::from_secs(30),
                "user {id} never readable"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lags.push(replied.elapsed());
    }
    lags.sort();
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
    println!(
        "register reply -> user readable over {tries} tries: median {:.1} ms, p90 {:.1} ms, worst {:.1} ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0))
    );
    Ok(())
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
