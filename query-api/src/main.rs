use query_api::settings::Settings;
use query_api::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init();
    let settings = Settings::from_env()?;
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "query API listening");
    app.run_until_stopped().await
}
