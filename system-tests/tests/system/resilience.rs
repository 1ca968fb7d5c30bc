//! Dependencies that are unwell, or not what a service expected: the services go on where
//! they can, and say "unavailable" (never "does not exist", never a server error) where not.

use infra::settings::{expose, secret};
use system_tests::TestStack;

/// A read replica takes no writes: a query API must start on one and serve from it, leaving
/// the schema to the projector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_api_starts_and_reads_on_a_read_only_replica_of_the_read_store() {
    let stack = TestStack::spawn().await;
    let (ann, token) = stack.registered("ann", "password1").await;
    stack.wait_for_user(ann, &token).await;

    let mut settings = stack.query_settings();
    // What a hot standby is to its clients: every transaction read-only.
    let url = expose(&settings.read_store.read_database_url);
    let separator = if url.contains('?') { '&' } else { '?' };
    settings.read_store.read_database_url = secret(&format!(
        "{url}{separator}options=-c%20default_transaction_read_only%3Don"
    ));
    let replica = query_api::startup::Application::build(settings)
        .await
        .expect("a query API starts on a read-only database");
    let replica_url = format!("http://127.0.0.1:{}", replica.port());
    tokio::spawn(replica.run_until_stopped());

    let reply: serde_json::Value = stack
        .http
        .get(format!("{replica_url}/douyin/relation/follower/list/"))
        .query(&[("user_id", ann.to_string().as_str()), ("token", &token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status_code"], 0, "{reply}");
    assert_eq!(reply["user_list"], serde_json::json!([]));
}
