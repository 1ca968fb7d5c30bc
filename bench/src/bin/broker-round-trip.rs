//! Ceiling (d) of `make bench`: a message produced and consumed through the broker with the
//! services' client library and settings, one at a time: the floor under write-to-read, which
//! takes this trip (relay to projector) besides its database and Redis work.
//! Prints one RESULT line (p50, p99, max in ms).

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

#[derive(Parser)]
#[command(about = "Produce-to-consume round trips through the broker")]
struct Args {
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value_t = 500)]
    messages: usize,
    /// Overrides the consumer's `fetch.wait.max.ms` (to see what it costs).
    #[arg(long)]
    fetch_wait_ms: Option<u32>,
    /// The producer's `linger.ms`, as the services take it.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = infra::settings::DEFAULT_KAFKA_LINGER_MS)]
    linger_ms: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = chrono::Utc::now().timestamp_millis();
    let topic = format!("bench-round-trip-{run}");
    let kafka = infra::settings::KafkaSettings {
        kafka_brokers: args.brokers.clone(),
        kafka_topic_prefix: String::new(),
        kafka_partitions: 1,
        kafka_replication_factor: 1,
        kafka_fetch_wait_ms: infra::settings::DEFAULT_KAFKA_FETCH_WAIT_MS,
        kafka_linger_ms: args.linger_ms,
    };
    infra::kafka::ensure_topics(&kafka, std::slice::from_ref(&topic)).await?;
    let producer: FutureProducer = infra::kafka::producer(&kafka)?;
    // The projector's own consumer settings.
    let mut config = infra::kafka::consumer_config(&kafka, &format!("bench-round-trip-{run}"));
    if let Some(wait) = args.fetch_wait_ms {
        config.set("fetch.wait.max.ms", wait.to_string());
    }
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[&topic])?;
    let mut trips = Vec::with_capacity(args.messages);
    // The first trip includes joining the group: not measured.
    for i in 0..=args.messages {
        let started = Instant::now();
        producer
            .send(
                FutureRecord::to(&topic).key("k").payload(&i.to_string()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)?;
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("no message back within 30 s")??;
        anyhow::ensure!(message.payload() == Some(i.to_string().as_bytes()));
        if i > 0 {
            trips.push(started.elapsed());
        }
    }
    drop(consumer);
    // The topic was this run's alone.
    let admin: AdminClient<DefaultClientContext> = infra::kafka::client_config(&kafka).create()?;
    admin.delete_topics(&[&topic], &AdminOptions::new()).await?;
    trips.sort();
    let at = |q: f64| trips[((trips.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "RESULT requests={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        trips.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
