use std::sync::Arc;
use std::time::Duration;

use infra::kafka::{consumer_config, ensure_topics, Topics};
use infra::redis_store::Keys;
use rdkafka::consumer::Consumer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::consumer::{CommitOnRevoke, Ended, EventConsumer, EventLoop, STATISTICS_INTERVAL};
use crate::operations::Operations;
use crate::projections::Projections;
use crate::settings::Settings;

pub struct Projector {
    settings: Settings,
    consumer: EventConsumer,
    projections: Projections,
    operations: (TcpListener, Arc<Operations>),
}

impl Projector {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        infra::hardening::keep_secrets_from_other_processes();
        let read_store = infra::read_store::connect_for_batches(&settings.read_store).await?;
        let consumer = new_consumer(&settings)?;
        let redis = infra::redis_store::connect_for_batches(&settings.redis).await?;
        let listener = TcpListener::bind(settings.listen).await?;
        let projections = Projections::new(read_store, redis, Keys::new(&settings.redis));
        let operations = Arc::new(Operations::new(&settings, projections.redis_behind()).await?);
        Ok(Self {
            projections,
            consumer,
            operations: (listener, operations),
            settings,
        })
    }

    /// The port of its operators' routes (`/metrics`, `/readyz`).
    pub fn port(&self) -> u16 {
        self.operations
            .0
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// Consumes until `stop`, then commits what it has applied.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let (listener, operations) = self.operations;
        // Its own token, so that a projector that stops by itself stops serving too.
        let serving_stop = stop.child_token();
        let serving = tokio::spawn(operations.serve(listener, serving_stop.clone()));
        let projected =
            Self::project(&self.settings, self.consumer, &self.projections, &stop).await;
        serving_stop.cancel();
        serving.await?;
        projected
    }

    async fn project(
        settings: &Settings,
        mut consumer: EventConsumer,
        projections: &Projections,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let topics = Topics::new(&settings.kafka);
        let names: Vec<String> = Projections::aggregate_types()
            .iter()
            .map(|aggregate_type| topics.for_aggregate(aggregate_type))
            .collect();
        // The projector may start before anything was published: create the topics rather
        // than subscribe to nothing.
        while let Err(error) = ensure_topics(&settings.kafka, &names).await {
            tracing::warn!(%error, "waiting for the broker");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
        // Redis may have lost its data while the projector was down: checked (and rebuilt if
        // need be) in the background, batches going on in Postgres meanwhile and their Redis
        // parts made once it is whole (see `Projections::execute`).
        projections.rebuild_in_background();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        loop {
            consumer.subscribe(&names)?;
            tracing::info!(topics = ?names, group = %settings.group.projector_group, "projecting");
            let ended = EventLoop {
                consumer: &consumer,
                projections,
            }
            .run(stop)
            .await;
            match ended {
                Ended::Stopped => return Ok(()),
                Ended::Fatal(error) => {
                    tracing::error!(%error, "the consumer cannot go on: a new one takes its place");
                    drop(consumer);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => return Ok(()),
                    }
                    consumer = new_consumer(settings)?;
                }
            }
        }
    }
}

/// A consumer of the projectors' group (a static member if `PROJECTOR_INSTANCE_ID` is set).
fn new_consumer(settings: &Settings) -> anyhow::Result<EventConsumer> {
    let mut config = consumer_config(&settings.kafka, &settings.group.projector_group);
    config.set(
        "statistics.interval.ms",
        STATISTICS_INTERVAL.as_millis().to_string(),
    );
    if let Some(instance) = &settings.group.projector_instance_id {
        config.set("group.instance.id", instance);
    }
    Ok(config.create_with_context(CommitOnRevoke)?)
}
