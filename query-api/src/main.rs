use query_api::settings::Settings;
use query_api::startup::Application;

/// mimalloc rather than glibc's allocator: what a burst of password hashes or uploads took is
/// given back to the system afterwards instead of staying resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves every read of the client API from the read models, and stored media, until SIGINT
/// or SIGTERM. Settings come from the environment (README).
#[derive(clap::Parser)]
#[command(version)]
struct Cli {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {} = clap::Parser::parse();
    infra::telemetry::init();
    let settings = Settings::from_env()?;
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "query API listening");
    let served = app.run_until_stopped().await;
    infra::telemetry::shutdown();
    served
}
