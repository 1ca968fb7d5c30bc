use projector::settings::Settings;
use projector::startup::Projector;
use tokio_util::sync::CancellationToken;

/// `projector` consumes the topics until stopped; `projector rebuild-redis` rebuilds the
/// Redis read models from the Postgres ones and exits (stop the projector first).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init();
    let settings = Settings::from_env()?;
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("rebuild-redis") => return rebuild_redis(&settings).await,
        Some(other) => anyhow::bail!("unknown command {other:?}: the only one is rebuild-redis"),
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
    let pool = infra::read_store::connect(&settings.read_store).await?;
    let redis = infra::redis_store::connect(&settings.redis).await?;
    let keys = infra::redis_store::Keys::new(&settings.redis);
    let rebuilt = projector::rebuild::rebuild_redis(&pool, &redis, &keys).await?;
    tracing::info!(?rebuilt, "Redis read models rebuilt from Postgres");
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
