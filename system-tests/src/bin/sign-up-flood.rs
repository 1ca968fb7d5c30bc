//! What a flood of anonymous sign-ups and logins costs the command API, against a running
//! stack: N registrations sent at once, then N logins at once (for N = 64 and 256), each
//! answered with success or "busy"; the command API's resident memory before, at the peak of
//! and after each burst, read from /proc. Run with rate limits off (`RATE_LIMIT=off`): an
//! attack comes from many addresses. Beside them, the ceiling: how many argon2 hashes (the
//! service's parameters) this machine makes a second on all its cores, measured here.
//!
//!     sign-up-flood BASE_URL COMMAND_API_PID [BURSTS (64,256)]

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::Value;
use tokio::sync::watch;

/// Bursts of anonymous sign-ups and logins against a running stack, and the command API's
/// resident memory before, at the peak of and after each.
#[derive(clap::Parser)]
struct Cli {
    /// The client API.
    base_url: String,
    /// The command API's process, whose memory is read from /proc.
    command_api_pid: u32,
    /// Requests sent at once, one burst each.
    #[arg(value_delimiter = ',', default_value = "64,256")]
    bursts: Vec<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        base_url: base,
        command_api_pid: pid,
        bursts,
    } = clap::Parser::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()?;
    let run = std::process::id();

    let ceiling = hash_ceiling();
    println!("ceiling: argon2id (default parameters) {ceiling:.0} hashes/s on all cores");
    println!("command API resident at start: {}", mib(resident_kib(pid)?));
    for &n in &bursts {
        let mut names: Vec<String> = (0..n).map(|i| format!("flood-{run}-{n}-{i}")).collect();
        for route in ["register", "login"] {
            let before = resident_kib(pid)?;
            let (stop, peak) = watch_peak(pid);
            let start = Instant::now();
            let replies = join_all(names.iter().map(|name| {
                let http = http.clone();
                let url = format!("{base}/douyin/user/{route}/");
                async move {
                    let reply = http
                        .post(url)
                        .query(&[("username", name.as_str()), ("password", "flood-password")])
                        .send()
                        .await?;
                    anyhow::Ok(reply.json::<Value>().await?)
                }
            }))
            .await;
            let took = start.elapsed();
            drop(stop);
            let peak = peak.await?;
            let tally = Tally::of(&replies);
            if route == "register" {
                // Logins with the names that were registered (cycled): a name turned away as
                // busy has no account, and its login would only be "wrong password".
                let registered: Vec<String> = names
                    .iter()
                    .zip(&replies)
                    .filter(|(_, reply)| reply.as_ref().is_ok_and(|r| r["status_code"] == 0))
                    .map(|(name, _)| name.clone())
                    .collect();
                anyhow::ensure!(!registered.is_empty(), "no registration succeeded");
                names = registered.iter().cycle().take(n).cloned().collect();
            }
            // What the allocator gives back once the burst is over. The pause is also longer
            // than actix's default keep-alive (5 s): nginx's idle upstream connections must
            // not be closed under it by the service (a 503 in the next burst).
            tokio::time::sleep(Duration::from_secs(6)).await;
            let after = resident_kib(pid)?;
            println!(
                "{n:>4} {route:<8} at once: {} succeeded, {} busy, {} other, {} failed in {:.2} s \
                 ({:.0} successes/s); resident before {}, peak {}, 6 s after {}",
                tally.succeeded,
                tally.busy,
                tally.other,
                tally.failed,
                took.as_secs_f64(),
                tally.succeeded as f64 / took.as_secs_f64(),
                mib(before),
                mib(peak),
                mib(after),
            );
            if let Some(example) = tally.example {
                println!("     e.g. {example}");
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    println!(
        "command API resident 30 s after the last burst: {}",
        mib(resident_kib(pid)?)
    );
    Ok(())
}

#[derive(Default)]
struct Tally {
    succeeded: usize,
    busy: usize,
    other: usize,
    failed: usize,
    example: Option<String>,
}

impl Tally {
    fn of(replies: &[anyhow::Result<Value>]) -> Self {
        let mut tally = Self::default();
        for reply in replies {
            match reply {
                Ok(reply) if reply["status_code"] == 0 => tally.succeeded += 1,
                Ok(reply) if reply["status_code"] == 503 => tally.busy += 1,
                Ok(reply) => {
                    tally.other += 1;
                    tally.example.get_or_insert_with(|| reply.to_string());
                }
                Err(error) => {
                    tally.failed += 1;
                    tally.example.get_or_insert_with(|| error.to_string());
                }
            }
        }
        tally
    }
}

/// Samples the resident memory every 10 ms until the sender is dropped; answers the peak.
fn watch_peak(pid: u32) -> (watch::Sender<()>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = watch::channel(());
    let peak = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(resident_kib(pid).unwrap_or(0));
            tokio::select! {
                _ = stopped.changed() => return peak,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });
    (stop, peak)
}

/// argon2 hashes a second when every core hashes, as the service does at most: each thread
/// reuses its 19 MiB of memory, so what is timed is the hash, not the allocator.
fn hash_ceiling() -> f64 {
    const HASHES: usize = 16;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let hasher = argon2::Argon2::default();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                let mut memory = vec![argon2::Block::default(); hasher.params().block_count()];
                let mut hash = [0u8; 32];
                for _ in 0..HASHES {
                    hasher
                        .hash_password_into_with_memory(
                            b"flood-password",
                            b"a salt of 16 bytes",
                            &mut hash,
                            &mut memory,
                        )
                        .expect("argon2 hashes any password");
                }
            });
        }
    });
    (cores * HASHES) as f64 / start.elapsed().as_secs_f64()
}

fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for process {pid}"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("unreadable VmRSS line {line:?}"))?
        .parse()?)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
