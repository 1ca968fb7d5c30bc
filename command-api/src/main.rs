use std::time::Duration;

use command_api::settings::Settings;
use command_api::startup::Application;

/// mimalloc rather than glibc's allocator: what a burst of password hashes or uploads took is
/// given back to the system afterwards instead of staying resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves the writes of the client API (and publishes their events through the outbox) until
/// SIGINT or SIGTERM. Settings come from the environment (README).
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Removes stored media no published video refers to, older than the grace period, then
    /// exits; safe while the API runs.
    SweepMedia {
        /// Seconds an object is left alone after it was stored (an upload may still be in
        /// progress): at least 300; an hour by default.
        grace_secs: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    infra::telemetry::init();
    let settings = Settings::from_env()?;
    match cli.command {
        None => {}
        Some(Command::SweepMedia { grace_secs }) => {
            let grace = grace_secs
                .map(Duration::from_secs)
                .unwrap_or(command_api::sweep::DEFAULT_GRACE);
            anyhow::ensure!(
                grace >= command_api::sweep::MIN_GRACE,
                "a grace under {} s could remove the objects of an upload in progress",
                command_api::sweep::MIN_GRACE.as_secs()
            );
            let store = infra::event_store::EventStore::connect(&settings.event_store).await?;
            let media = http_api::media::MediaStore::connect(&settings.media)?;
            let swept = command_api::sweep::sweep_media(&store, &media, grace).await?;
            tracing::info!(?swept, "media swept");
            return Ok(());
        }
    }
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "command API listening");
    let served = app.run_until_stopped().await;
    infra::telemetry::shutdown();
    served
}
