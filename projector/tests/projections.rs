//! Read models against the real read store.

use chrono::Utc;
use infra::envelope::PublishedEvent;
use infra::testing::TestSettings;
use projector::projections::{Outcome, ProjectionError, Projections};
use serde_json::json;

fn registered(user_id: i64, sequence: i64, name: &str) -> PublishedEvent {
    PublishedEvent {
        event_id: format!("user/{user_id}/{sequence}"),
        event_type: "UserRegistered".to_owned(),
        event_version: 1,
        aggregate_type: "user".to_owned(),
        aggregate_id: user_id.to_string(),
        sequence,
        occurred_at: Utc::now(),
        payload: json!({ "name": name }).as_object().unwrap().clone(),
    }
}

async fn projections() -> (Projections, deadpool_postgres::Pool) {
    let settings = TestSettings::new().await;
    let pool = infra::read_store::connect(&settings.read_store)
        .await
        .unwrap();
    let redis = infra::redis_store::connect(&settings.redis).await.unwrap();
    let keys = infra::redis_store::Keys::new(&settings.redis);
    (Projections::new(pool.clone(), redis, keys), pool)
}

async fn names(pool: &deadpool_postgres::Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    client
        .query("SELECT name FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn an_event_delivered_twice_is_applied_once() {
    let (projections, pool) = projections().await;
    let event = registered(1, 1, "ann");
    assert_eq!(projections.apply(&event).await.unwrap(), Outcome::Applied);
    assert_eq!(
        projections.apply(&event).await.unwrap(),
        Outcome::AlreadyApplied
    );
    assert_eq!(names(&pool).await, ["ann"]);
}

#[tokio::test]
async fn events_of_other_aggregates_are_not_mistaken_for_repeats() {
    let (projections, pool) = projections().await;
    for id in 1..=3 {
        let event = registered(id, 1, &format!("user{id}"));
        assert_eq!(projections.apply(&event).await.unwrap(), Outcome::Applied);
    }
    assert_eq!(names(&pool).await, ["user1", "user2", "user3"]);
}

#[tokio::test]
async fn an_event_no_projection_understands_is_reported_unreadable() {
    let (projections, pool) = projections().await;
    let mut event = registered(1, 1, "ann");
    event.event_type = "UserTeleported".to_owned();
    assert!(matches!(
        projections.apply(&event).await,
        Err(ProjectionError::Unreadable(_))
    ));
    let ignored = PublishedEvent {
        aggregate_type: "account".to_owned(),
        ..registered(1, 1, "ann")
    };
    assert_eq!(projections.apply(&ignored).await.unwrap(), Outcome::Ignored);
    assert!(names(&pool).await.is_empty());
}
