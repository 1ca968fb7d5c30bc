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
    /// Rebuilds every read model (Postgres and Redis) from the event store into a new
    /// generation beside the live one, while projectors and readers go on with the live one;
    /// then switches both to it and drops the old one. Started again after a crash, it takes
    /// up where it stopped. Reads DATABASE_URL (the event store) besides the projector's
    /// settings.
    Rebuild {
        /// Blocks of the event store's table (8 KiB, some 40 events each) read and applied at
        /// a time.
        #[arg(long, default_value_t = 64)]
        blocks: i64,
        /// No progress bar (there is none unless stderr is a terminal anyway).
        #[arg(long)]
        quiet: bool,
        /// Replays nothing: drops what a replay that stopped midway built (its schema and its
        /// Redis generation) instead of taking it up.
        #[arg(long)]
        abandon: bool,
    },
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
        Some(Command::Rebuild { abandon: true, .. }) => {
            let dropped = projector::replay::abandon(&settings).await?;
            println!(
                "{}",
                if dropped {
                    "dropped what the stopped replay built"
                } else {
                    "no replay had stopped midway"
                }
            );
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Rebuild { blocks, quiet, .. }) => {
            let options = projector::replay::Options {
                blocks,
                progress: !quiet,
            };
            return rebuild(&settings, &options).await;
        }
        Some(Command::RebuildRedis) => return rebuild_redis(&settings).await,
        Some(Command::Redrive) => return redrive(&settings).await,
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
    let projected = projector.run(stop).await;
    infra::telemetry::shutdown();
    projected?;
    Ok(ExitCode::SUCCESS)
}

async fn rebuild(
    settings: &Settings,
    options: &projector::replay::Options,
) -> anyhow::Result<ExitCode> {
    let event_store: infra::settings::EventStoreSettings = infra::settings::from_env()?;
    let replayed = projector::replay::rebuild(settings, &event_store, options).await?;
    println!(
        "replayed {} events in {:.1} s ({:.0} events/s){}; {} written meanwhile caught up",
        replayed.replayed,
        replayed.replaying.as_secs_f64(),
        replayed.rate(),
        if replayed.resumed {
            ", taking up a replay that stopped"
        } else {
            ""
        },
        replayed.caught_up,
    );
    println!(
        "switched to generation {}: {} events applied at the switch, projectors paused {:.0} ms, \
         readers of Postgres held at most {:.0} ms ({} retries)",
        replayed.generation,
        replayed.switch.applied,
        replayed.switch.projectors_paused.as_secs_f64() * 1e3,
        replayed.switch.readers_blocked.as_secs_f64() * 1e3,
        replayed.switch.retries,
    );
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

async fn redrive(settings: &Settings) -> anyhow::Result<ExitCode> {
    // The projections alone: no consumer, and no operator routes (the running projector
    // serves those on PROJECTOR_ADDR).
    let read_store = infra::read_store::connect_for_batches(&settings.read_store).await?;
    let redis = infra::redis_store::connect_for_batches(&settings.redis).await?;
    let projections = projector::projections::Projections::new(
        read_store.clone(),
        redis,
        infra::redis_store::Keys::new(&settings.redis),
    );
    let redriven = projector::redrive::redrive(&read_store, &projections).await?;
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
