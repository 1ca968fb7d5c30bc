use std::time::Duration;

use infra::kafka::{consumer_config, ensure_topics, Topics};
use infra::redis_store::Keys;
use rdkafka::consumer::Consumer;
use tokio_util::sync::CancellationToken;

use crate::consumer::{CommitOnRevoke, EventConsumer, EventLoop};
use crate::projections::Projections;
use crate::settings::Settings;

pub struct Projector {
    settings: Settings,
    consumer: EventConsumer,
    projections: Projections,
    read_store: deadpool_postgres::Pool,
}

impl Projector {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let read_store = infra::read_store::connect_for_batches(&settings.read_store).await?;
        let consumer: EventConsumer =
            consumer_config(&settings.kafka, &settings.group.projector_group)
                .create_with_context(CommitOnRevoke)?;
        let redis = infra::redis_store::connect_for_batches(&settings.redis).await?;
        Ok(Self {
            projections: Projections::new(read_store.clone(), redis, Keys::new(&settings.redis)),
            read_store,
            consumer,
            settings,
        })
    }

    pub fn projections(&self) -> &Projections {
        &self.projections
    }

    pub fn read_store(&self) -> &deadpool_postgres::Pool {
        &self.read_store
    }

    /// Consumes until `stop`, then commits what it has applied.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let topics = Topics::new(&self.settings.kafka);
        let names: Vec<String> = Projections::aggregate_types()
            .iter()
            .map(|aggregate_type| topics.for_aggregate(aggregate_type))
            .collect();
        // The projector may start before anything was published: create the topics rather
        // than subscribe to nothing.
        while let Err(error) = ensure_topics(&self.settings.kafka, &names).await {
            tracing::warn!(%error, "waiting for the broker");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
        // Events are applied on top of whole read models only: after a Redis that lost its
        // data, rebuild them before consuming rather than at the first event. Redis away is
        // no reason to wait: the Postgres read models keep up, and Redis is rebuilt once it
        // answers (see `Projections::execute`).
        if let Err(error) = self.projections.restore_redis().await {
            tracing::warn!(%error, "could not check the Redis read models yet: batches will");
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.consumer.subscribe(&names)?;
        tracing::info!(topics = ?names, group = %self.settings.group.projector_group, "projecting");
        EventLoop {
            consumer: &self.consumer,
            projections: &self.projections,
        }
        .run(&stop)
        .await;
        Ok(())
    }
}
