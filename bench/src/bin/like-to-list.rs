//! Write to read, as one user sees it: likes (or unlikes) a video, then polls its own
//! favorite list every 2 ms until the list shows the change; the lag is the time from the
//! like's reply to the first list that shows it. Run beside other load to measure the lag
//! under it. Prints one RESULT line (p50, p99, max in ms) for scripts/bench.sh, and one
//! WRITE line: the like's own latency, from sending it to its answer, and how many answers
//! said "saved" (answered before readable: the read-after-write wait hit its bound).

use std::time::{Duration, Instant};

use anyhow::ensure;
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Lag from a like's reply to the liker's favorite list showing it")]
struct Args {
    /// The client API, through nginx.
    #[arg(long)]
    base: String,
    #[arg(long)]
    user_id: i64,
    #[arg(long)]
    token: String,
    /// Videos liked and unliked in turn: `first..first+count`.
    #[arg(long)]
    first_video: i64,
    #[arg(long, default_value_t = 20)]
    videos: i64,
    #[arg(long, default_value_t = 200)]
    tries: usize,
}

const POLL_EVERY: Duration = Duration::from_millis(2);
const GIVE_UP: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    let list = |http: &reqwest::Client| {
        http.get(format!("{}/douyin/favorite/list/", args.base))
            .query(&[
                ("user_id", args.user_id.to_string()),
                ("token", args.token.clone()),
            ])
            .send()
    };
    // Start from none of the videos liked, as the list says.
    let liked: Value = list(&http).await?.json().await?;
    let already: Vec<i64> = liked["video_list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|video| video["id"].as_i64())
        .collect();
    let mut lags = Vec::with_capacity(args.tries);
    let mut writes = Vec::with_capacity(args.tries);
    let mut saved = 0;
    for i in 0..args.tries {
        let video = args.first_video + (i as i64 / 2) % args.videos;
        if already.contains(&video) {
            continue;
        }
        let like = i % 2 == 0;
        let sent = Instant::now();
        let reply: Value = http
            .post(format!("{}/douyin/favorite/action/", args.base))
            .query(&[
                ("token", args.token.as_str()),
                ("video_id", &video.to_string()),
                ("action_type", if like { "1" } else { "2" }),
            ])
            .send()
            .await?
            .json()
            .await?;
        ensure!(reply["status_code"] == 0, "like refused: {reply}");
        let replied = Instant::now();
        writes.push(replied - sent);
        if reply["status_msg"] != "success" {
            saved += 1;
        }
        loop {
            let listed: Value = list(&http).await?.json().await?;
            let shows = listed["video_list"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|listed| listed["id"].as_i64() == Some(video));
            if shows == like {
                lags.push(replied.elapsed());
                break;
            }
            ensure!(
                replied.elapsed() < GIVE_UP,
                "video {video} not shown after {GIVE_UP:?}"
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
    ensure!(!lags.is_empty(), "no like was measured");
    println!("RESULT {}", quantiles(&mut lags));
    println!("WRITE {} saved={saved}", quantiles(&mut writes));
    Ok(())
}

/// `requests= p50_ms= p99_ms= max_ms=` of `times`.
fn quantiles(times: &mut [Duration]) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!(
        "requests={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        times.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}
