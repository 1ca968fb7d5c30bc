use projector::settings::Settings;
use projector::startup::Projector;
use tokio_util::sync::CancellationToken;

/// mimalloc rather than glibc's allocator: what a burst of password hashes or uploads took is
/// given back to the system afterwards instead of staying resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `projector` consumes the topics until stopped. Operators' commands, safe while projectors
/// run: `projector rebuild-redis` rebuilds the Redis read models from the Postgres ones;
/// `projector redrive` applies the dead-lettered events it can now read.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init();
    let settings = Settings::from_env()?;
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("rebuild-redis") => return rebuild_redis(&settings).await,
        Some("redrive") => return redrive(settings).await,
        Some(other) => {
            anyhow::bail!("unknown command {other:?}: the commands are rebuild-redis and redrive")
        }
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
    projector.run(stop).await
}

async fn rebuild_redis(settings: &Settings) -> anyhow::Result<()> {
    let pool = infra::read_store::connect_for_batches(&settings.read_store).await?;
    let redis = infra::redis_store::connect_for_batches(&settings.redis).await?;
    let keys = infra::redis_store::Keys::new(&settings.redis);
    let rebuilt = projector::rebuild::rebuild_redis(&pool, &redis, &keys).await?;
    tracing::info!(?rebuilt, "Redis read models rebuilt from Postgres");
    Ok(())
}

async fn redrive(settings: Settings) -> anyhow::Result<()> {
    let projector = Projector::build(settings).await?;
    let redriven =
        projector::redrive::redrive(projector.read_store(), projector.projections()).await?;
    tracing::info!(?redriven, "dead letters redriven");
    if redriven.left > 0 {
        anyhow::bail!(
            "{} dead letters are still unreadable or held back",
            redriven.left
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
