use std::time::Duration;

use command_api::settings::Settings;
use command_api::startup::Application;

/// mimalloc rather than glibc's allocator: what a burst of password hashes or uploads took is
/// given back to the system afterwards instead of staying resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `command-api` serves the writes until stopped. `command-api sweep-media [GRACE_SECS]`
/// removes stored media that no published video refers to and that is older than the grace
/// period (an hour by default), then exits; safe while the API runs.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init();
    let settings = Settings::from_env()?;
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => {}
        Some("sweep-media") => {
            let grace = match args.next() {
                Some(seconds) => Duration::from_secs(seconds.parse()?),
                None => command_api::sweep::DEFAULT_GRACE,
            };
            anyhow::ensure!(
                grace >= command_api::sweep::MIN_GRACE,
                "a grace under {} s could remove the objects of an upload in progress",
                command_api::sweep::MIN_GRACE.as_secs()
            );
            let store = infra::event_store::EventStore::connect(&settings.event_store).await?;
            let media = infra::media::MediaStore::connect(&settings.media)?;
            let swept = command_api::sweep::sweep_media(&store, &media, grace).await?;
            tracing::info!(?swept, "media swept");
            return Ok(());
        }
        Some(other) => anyhow::bail!("unknown command {other:?}: the only one is sweep-media"),
    }
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "command API listening");
    app.run_until_stopped().await
}
