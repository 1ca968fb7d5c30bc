use std::process::ExitCode;

use analytics::{Analytics, Settings, Store};
use clap::{Parser, Subcommand};
use infra::settings::expose;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// An example consumer of the published events: counts, per hour of event time (UTC), videos
/// published, likes given, taken back and net, comments, follows, messages, sign-ups, active
/// users and the ten most liked videos, in a database of its own (ANALYTICS_DATABASE_URL),
/// reading every topic under KAFKA_TOPIC_PREFIX from KAFKA_BROKERS in its own consumer group
/// (ANALYTICS_GROUP). Each event counts once, however often it is delivered; a run takes up
/// where the last one stopped. Logs go to stderr, reports to stdout.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Counts events as they come, until Ctrl-C or SIGTERM.
    Run,
    /// Counts what the topics hold now, then prints the report and exits (`make analytics`).
    CatchUp {
        /// How many hours the report covers, up to the current one.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..))]
        hours: u32,
    },
    /// Prints the hourly numbers counted so far, as a table (reads only the database).
    Report {
        /// How many hours the report covers, up to the current one.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..))]
        hours: u32,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    match execute(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(%error, "analytics failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> Result<ExitCode, analytics::Error> {
    let settings = Settings::from_env()?;
    match command {
        Command::Run => {
            let analytics = Analytics::connect(&settings).await?;
            analytics.run(&stop_on_signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CatchUp { hours } => {
            let analytics = Analytics::connect(&settings).await?;
            let progress = analytics.catch_up(&stop_on_signals()).await?;
            print!("{}", analytics.store().report_last(hours).await?);
            if progress.caught_up {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("stopped before catching up: the report is partial");
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Report { hours } => {
            let store = Store::connect(expose(&settings.analytics.analytics_database_url)).await?;
            print!("{}", store.report_last(hours).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Cancelled at Ctrl-C or SIGTERM: what was counted is then committed before exiting.
fn stop_on_signals() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "SIGTERM cannot be caught: only Ctrl-C stops cleanly");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("stopping");
        token.cancel();
    });
    stop
}

/// As the services' logs (`RUST_LOG`, `LOG_FORMAT=json`), but on stderr: stdout is the report.
fn init_logs() {
    // sqlx tells at `info` of every migration table that already exists: noise on each run.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
