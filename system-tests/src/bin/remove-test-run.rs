//! Removes what one test run made (`make test` runs it at the end): its databases, Redis keys,
//! topics, consumer groups and media folders, all named under the run's prefix, and nothing else.

use system_tests::leftovers::{remove, Services};

/// Removes one test run's databases, Redis keys, topics, consumer groups and media folders.
///
/// Reads TEST_POSTGRES_URL, REDIS_URL and KAFKA_BROKERS, as the tests do.
#[derive(clap::Parser)]
struct Cli {
    /// The run's prefix (`TEST_RUN_PREFIX` of the run): `test-<id>-`.
    prefix: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { prefix } = clap::Parser::parse();
    let removed = remove(&Services::from_env(), &prefix).await?;
    println!("removed {prefix}*: {removed}");
    Ok(())
}
