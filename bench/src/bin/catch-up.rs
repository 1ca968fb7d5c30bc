//! The catch-up part of `make bench`: how fast the projector consumes a backlog it was
//! stopped through, beside its ceiling.
//!
//! `catch-up ceiling` reads the backlog (from the projector group's committed offsets to the
//! topics' ends) with a bare rdkafka consumer of the projector's own settings that does
//! nothing with what it reads: what consuming alone costs on this machine. `catch-up watch`,
//! started with the projector, returns once the group has consumed the backlog. Each prints
//! one RESULT line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::positions::Positions;
use clap::{Parser, Subcommand};
use infra::settings::{from_env, KafkaSettings};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};

#[derive(Parser)]
#[command(about = "The projector's catch-up after a stop, and its ceiling")]
struct Cli {
    /// The projector's consumer group.
    #[arg(long, env = "PROJECTOR_GROUP")]
    group: String,
    /// Gives up after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reads the group's backlog with a bare consumer (committing nothing).
    Ceiling,
    /// Waits until the group has consumed its backlog.
    Watch,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let kafka = from_env::<KafkaSettings>()?;
    let positions = Positions::new(&kafka, &cli.group)?;
    let timeout = Duration::from_secs(cli.timeout);
    match cli.command {
        Command::Ceiling => ceiling(&kafka, &positions, timeout).await,
        Command::Watch => watch(&positions, timeout).await,
    }
}

async fn ceiling(
    kafka: &KafkaSettings,
    positions: &Positions,
    timeout: Duration,
) -> anyhow::Result<()> {
    let backlog: Vec<_> = positions
        .now()?
        .into_iter()
        .filter(|position| position.behind() > 0)
        .collect();
    let total: i64 = backlog.iter().map(|position| position.behind()).sum();
    anyhow::ensure!(total > 0, "the group has no backlog");
    let group = format!(
        "bench-catch-up-ceiling-{}",
        chrono::Utc::now().timestamp_millis()
    );
    let consumer: StreamConsumer = infra::kafka::consumer_config(kafka, &group).create()?;
    let mut assignment = TopicPartitionList::new();
    let mut left: HashMap<(String, i32), i64> = HashMap::new();
    for position in &backlog {
        assignment.add_partition_offset(
            &position.topic,
            position.partition,
            Offset::Offset(position.committed),
        )?;
        left.insert((position.topic.clone(), position.partition), position.end);
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut read = 0i64;
    while !left.is_empty() {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .context("the backlog was not read within the timeout")??;
        let key = (message.topic().to_owned(), message.partition());
        if let Some(end) = left.get(&key) {
            read += 1;
            if message.offset() + 1 >= *end {
                left.remove(&key);
            }
        }
    }
    report(read, started.elapsed(), None);
    Ok(())
}

async fn watch(positions: &Positions, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let backlog = positions.behind()?;
    let mut first_progress = None;
    loop {
        let behind = positions.behind()?;
        if behind < backlog && first_progress.is_none() {
            first_progress = Some(started.elapsed());
        }
        if behind == 0 {
            report(backlog, started.elapsed(), first_progress);
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "{behind} of {backlog} still unconsumed after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One RESULT line: `rps` counts from the start (the projector's start-up included).
fn report(events: i64, took: Duration, first_progress: Option<Duration>) {
    let seconds = took.as_secs_f64();
    let start = first_progress.map_or(String::new(), |at| {
        format!(" first_progress_s={:.2}", at.as_secs_f64())
    });
    println!(
        "RESULT rps={:.0} events={events} seconds={seconds:.2}{start}",
        events as f64 / seconds
    );
}
