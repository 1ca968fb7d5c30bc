use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use verify::{Options, Settings};

/// Checks that the read models (Postgres and Redis) and the topics agree with the event
/// store, folding the events with an implementation of its own. Reads the services' settings
/// from the environment (DATABASE_URL, READ_DATABASE_URL, REDIS_URL, REDIS_KEY_PREFIX,
/// KAFKA_BROKERS, KAFKA_TOPIC_PREFIX, PROJECTOR_GROUP). Prints each difference; exits with 1
/// if any remain. Safe on a live stack: it only reads.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Seconds each wait may take: for the relay to publish what was folded, and for the
    /// projector to commit past the topics' ends.
    #[arg(long, default_value_t = 60)]
    wait: u64,
    /// Do not read the topics from the beginning (the longest part on a large history).
    #[arg(long)]
    skip_topics: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    infra::telemetry::init();
    let settings = Settings::from_env()?;
    let options = Options {
        wait: Duration::from_secs(cli.wait),
        topics: !cli.skip_topics,
    };
    let report = verify::verify(&settings, &options).await?;
    for difference in &report.differences {
        println!("{difference}");
    }
    println!(
        "{} events, {} pass(es){}: {} difference(s)",
        report.events,
        report.passes,
        if report.caught_up {
            ""
        } else {
            ", the projector not caught up"
        },
        report.differences.len()
    );
    Ok(if report.differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
