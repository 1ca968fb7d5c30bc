use projector::settings::Settings;
use projector::startup::Projector;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init();
    let settings = Settings::from_env()?;
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

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
