//! `compose.yaml` and the Dockerfile, read as a reviewer would (no Docker engine runs here):
//! each point below is a way `docker compose up --build` went wrong or could.

use serde_json::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../compose.yaml"))
        .expect("compose.yaml is at the root");
    serde_saphyr::from_str(&text).expect("compose.yaml is YAML")
}

fn dockerfile() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile"))
        .expect("the Dockerfile is at the root")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    &compose["services"][name]
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

#[test]
fn kafka_keeps_its_data_on_its_volume() {
    let compose = compose();
    let kafka = service(&compose, "kafka");
    let dirs = text(&kafka["environment"]["KAFKA_LOG_DIRS"]);
    let volumes: Vec<String> = kafka["volumes"]
        .as_array()
        .expect("kafka has volumes")
        .iter()
        .map(text)
        .collect();
    assert!(
        volumes
            .iter()
            .any(|volume| volume.ends_with(&format!(":{dirs}"))),
        "KAFKA_LOG_DIRS {dirs} is not on a volume: {volumes:?}"
    );
}

#[test]
fn kafka_is_the_version_the_local_stack_runs_and_reachable_from_the_host_on_loopback() {
    let compose = compose();
    let kafka = service(&compose, "kafka");
    let pom = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kafka/pom.xml"
    ))
    .unwrap();
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the pom pins Kafka's version");
    assert_eq!(text(&kafka["image"]), format!("apache/kafka:{version}"));
    let ports: Vec<String> = kafka["ports"]
        .as_array()
        .expect("kafka publishes a port")
        .iter()
        .map(text)
        .collect();
    let advertised = text(&kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]);
    let host_port = ports
        .iter()
        .find_map(|port| port.strip_prefix("127.0.0.1:"))
        .and_then(|port| port.split(':').next())
        .expect("a port published on the host's loopback only");
    assert!(
        advertised.contains(&format!("localhost:{host_port}")),
        "{advertised} advertises no listener the host reaches on :{host_port}"
    );
}

#[test]
fn kafkas_internal_topics_have_no_more_replicas_than_brokers() {
    let compose = compose();
    let brokers = compose["services"]
        .as_object()
        .unwrap()
        .values()
        .filter(|service| {
            service["image"]
                .as_str()
                .is_some_and(|image| image.starts_with("apache/kafka:"))
        })
        .count();
    let environment = &service(&compose, "kafka")["environment"];
    for setting in [
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    ] {
        let factor: usize = text(&environment[setting])
            .parse()
            .unwrap_or_else(|_| panic!("{setting} is set"));
        assert!(
            factor <= brokers,
            "{setting} {factor} with {brokers} broker(s)"
        );
    }
}

#[test]
fn the_secret_comes_from_an_ignored_env_file_and_compose_works_without_it() {
    let compose = compose();
    let secret = text(&compose["x-service-env"]["JWT_SECRET"]);
    assert!(
        !secret.contains(":?"),
        "{secret}: compose refuses every command (ps, down) while it is unset"
    );
    let ignored =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.gitignore")).unwrap();
    assert!(ignored
        .lines()
        .any(|line| line == "/.env" || line == ".env"));
}

#[test]
fn every_image_is_pinned() {
    let compose = compose();
    for (name, service) in compose["services"].as_object().unwrap() {
        if let Some(image) = service["image"].as_str() {
            let tag = image.rsplit_once(':').map(|(_, tag)| tag);
            assert!(
                tag.is_some_and(|tag| tag != "latest"),
                "{name} runs {image}: not pinned"
            );
        }
    }
    for line in dockerfile()
        .lines()
        .filter(|line| line.starts_with("FROM "))
    {
        let image = line.split_whitespace().nth(1).unwrap();
        assert!(
            image
                .rsplit_once(':')
                .is_some_and(|(_, tag)| tag != "latest"),
            "{line}: not pinned"
        );
    }
}

#[test]
fn one_image_holds_every_binary_and_a_folder_its_user_can_write() {
    let dockerfile = dockerfile();
    for binary in [
        "command-api",
        "projector",
        "query-api",
        "verify",
        "analytics",
        "remove-test-run",
    ] {
        assert!(
            dockerfile.contains(&format!("--bin {binary}"))
                && dockerfile.contains(&format!("target/release/{binary}")),
            "the image lacks {binary}"
        );
    }
    let user = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the image runs as a user of its own");
    let home = dockerfile
        .split("--home-dir ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the user has a home");
    assert!(
        dockerfile.contains("--create-home"),
        "{user}'s home is made"
    );
    assert!(
        dockerfile.contains(&format!("WORKDIR {home}")),
        "the working directory is {user}'s home, which it can write"
    );
}
