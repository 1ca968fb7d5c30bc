use std::process::ExitCode;

use clap::{Parser, Subcommand};
use projector::settings::Settings;
use projector::startup::Projector;
use tokio_util::sync::CancellationToken;

/// mimalloc rather than glibc's allocator: what a burst of password hashes or uploads took is
/// given back to the system afterwards instead of staying resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Consumes the event topics and builds the read models, until SIGINT or SIGTERM. Settings
/// come from the environment (README). The commands are for operators, and safe while
/// projectors run.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Rebuilds the Redis read models from the Postgres ones.
    RebuildRedis,
    /// Applies the dead-lettered events this build can read; exits with 1 if some are left.
    Redrive,
    /// Lists the aggregates held back because an event came before an earlier one of theirs
    /// (docs/architecture.md says how to close such a gap); exits with 1 if there are any.
    Waiting,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    infra::telemetry::init();
    let settings = Settings::from_env()?;
    match cli.command {
        None => {}
        Some(Command::RebuildRedis) => return rebuild_redis(&settings).await,
        Some(Command::Redrive) => return redrive(settings).await,
        Some(Command::Waiting) => return waiting(&settings).await,
    }
    let projector = Projector::build(settings).await?;
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("stopping: finishing the event in hand and committing offsets");
            stop.cancel();
        }
    });
    projector.run(stop).await?;
    Ok(ExitCode::SUCCESS)
}

async fn rebuild_redis(settings: &Settings) -> anyhow::Result<ExitCode> {
    let pool = infra::read_store::connect_for_batches(&settings.read_store).await?;
    let redis = infra::redis_store::connect_for_batches(&settings.redis).await?;
    let keys = infra::redis_store::Keys::new(&settings.redis);
    let rebuilt = projector::rebuild::rebuild_redis(&pool, &redis, &keys).await?;
    tracing::info!(?rebuilt, "Redis read models rebuilt from Postgres");
    Ok(ExitCode::SUCCESS)
}

async fn redrive(settings: Settings) -> anyhow::Result<ExitCode> {
    let projector = Projector::build(settings).await?;
    let redriven =
        projector::redrive::redrive(projector.read_store(), projector.projections()).await?;
    tracing::info!(?redriven, "dead letters redriven");
    if redriven.left > 0 {
        tracing::error!(
            "{} dead letters are still unreadable or held back",
            redriven.left
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn waiting(settings: &Settings) -> anyhow::Result<ExitCode> {
    let pool = infra::read_store::connect(&settings.read_store).await?;
    let gaps = projector::waiting::gaps(&pool).await?;
    for gap in &gaps {
        println!(
            "{}/{}: applied through {}, waiting since {}: {:?}",
            gap.aggregate_type, gap.aggregate_id, gap.last_applied, gap.since, gap.waiting
        );
    }
    println!("{} aggregate(s) held back by a gap", gaps.len());
    Ok(if gaps.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
