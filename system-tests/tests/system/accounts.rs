//! Register, login and user info, through HTTP, the event store, the broker, the projector and
//! the read models.

use std::time::Duration;

use serde_json::{json, Value};
use system_tests::TestStack;

/// Parameters sent, and the `status_code` and `status_msg` expected back.
type Case<'a> = (Vec<(&'a str, &'a str)>, i64, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_user_can_log_in_and_be_read_back() {
    let stack = TestStack::spawn().await;

    let (user_id, token) = stack.registered("alice", "wonderland").await;
    assert!(user_id > 0 && user_id < (1 << 53));

    let login = stack
        .command(
            "/douyin/user/login/",
            &[("username", "alice"), ("password", "wonderland")],
        )
        .await;
    assert_eq!(login["status_code"], 0, "{login}");
    assert_eq!(login["user_id"], user_id);
    let login_token = login["token"].as_str().unwrap();

    let (reply, _) = stack.wait_for_user(user_id, login_token).await;
    let user = &reply["user"];
    assert_eq!(
        user,
        &json!({
            "id": user_id,
            "name": "alice",
            "follow_count": 0,
            "follower_count": 0,
            "is_follow": false,
            "avatar": "http://douyin.test/static/avatar.png",
            "background_image": "http://douyin.test/static/background.png",
            "signature": "This user has not written a signature yet.",
            "total_favorited": 0,
            "work_count": 0,
            "favorite_count": 0
        })
    );
    // The register token works as well as the login one.
    assert_eq!(stack.user(user_id, &token).await["status_code"], 0);
    // Without `user_id`, the token's own user.
    let own = stack.query("/douyin/user/", &[("token", &token)]).await;
    assert_eq!(&own["user"], user, "{own}");
    assert_eq!(own["status_msg"], "success");

    // The default images are served, as images.
    for path in ["/static/avatar.png", "/static/background.png"] {
        let image = stack
            .http
            .get(format!("{}{path}", stack.query_url))
            .send()
            .await
            .unwrap();
        assert_eq!(image.status(), 200);
        assert_eq!(image.headers()["content-type"], "image/png");
        assert!(image.bytes().await.unwrap().starts_with(b"\x89PNG"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_may_come_in_a_form_body_and_the_query_string_wins() {
    let stack = TestStack::spawn().await;
    let form = stack
        .http
        .post(format!("{}/douyin/user/register/", stack.command_url))
        .form(&[("username", "bob"), ("password", "builder")])
        .send()
        .await
        .unwrap();
    let form: Value = form.json().await.unwrap();
    assert_eq!(form["status_code"], 0, "{form}");

    let both = stack
        .http
        .post(format!("{}/douyin/user/login/", stack.command_url))
        .query(&[("username", "bob"), ("password", "builder")])
        .form(&[("username", "bob"), ("password", "not the password")])
        .send()
        .await
        .unwrap();
    let both: Value = both.json().await.unwrap();
    assert_eq!(both["status_code"], 0, "{both}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_given_to_exactly_one_of_sixteen_simultaneous_registrations() {
    let stack = TestStack::spawn().await;
    let attempts = (0..16).map(|i| {
        let stack = &stack;
        async move { stack.register("carol", &format!("password-{i}")).await }
    });
    // Polled together, so the registrations race.
    let replies = futures::future::join_all(attempts).await;

    let winners: Vec<&Value> = replies.iter().filter(|r| r["status_code"] == 0).collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    for loser in replies.iter().filter(|r| r["status_code"] != 0) {
        assert_eq!(loser["status_code"], 409, "{loser}");
        assert_eq!(loser["status_msg"], "the user name is already taken");
    }
    let opened: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'account' AND aggregate_id = 'carol'",
    )
    .fetch_one(&stack.event_store)
    .await
    .unwrap();
    assert_eq!(opened, 1);

    // Registering the name later fails too, and the winner's password is the one that works.
    let again = stack.register("carol", "password-0").await;
    assert_eq!(again["status_code"], 409);
    let winner_id = winners[0]["user_id"].as_i64().unwrap();
    let mut logins = 0;
    for i in 0..16 {
        let login = stack
            .command(
                "/douyin/user/login/",
                &[
                    ("username", "carol"),
                    ("password", &format!("password-{i}")),
                ],
            )
            .await;
        if login["status_code"] == 0 {
            assert_eq!(login["user_id"], winner_id);
            logins += 1;
        }
    }
    assert_eq!(logins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_one_account_whatever_their_unicode_form_and_log_in_as_typed() {
    let stack = TestStack::spawn().await;
    let decomposed = "Zoe\u{0301}";
    let composed = "Zo\u{00E9}";
    let (zoe, token) = stack.registered(decomposed, "password1").await;
    let card = stack.wait_for_user(zoe, &token).await.0;
    assert_eq!(card["user"]["name"], composed, "kept in composed form");

    let again = stack.register(composed, "password2").await;
    assert_eq!(again["status_code"], 409, "{again}");
    // Either spelling logs in.
    for spelling in [decomposed, composed] {
        let login = stack
            .command(
                "/douyin/user/login/",
                &[("username", spelling), ("password", "password1")],
            )
            .await;
        assert_eq!(login["user_id"], zoe, "{spelling:?}: {login}");
    }
    // An emoji made with a joiner is a name like any other.
    stack.registered("coder 👩\u{200D}💻", "password1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let stack = TestStack::spawn().await;
    let (user_id, token) = stack.registered("dave", "secret").await;
    stack.wait_for_user(user_id, &token).await;
    let events_before = stack.count_events().await;

    let long = "x".repeat(33);
    let register_cases: Vec<Case> = vec![
        (vec![("password", "pw")], 400, "`username` is required"),
        (vec![("username", "erin")], 400, "`password` is required"),
        (
            vec![("username", ""), ("password", "pw")],
            400,
            "`username` must not be empty",
        ),
        (
            vec![("username", &long), ("password", "pw")],
            400,
            "`username` must be at most 32 characters",
        ),
        (
            vec![("username", "erin"), ("password", &long)],
            400,
            "`password` must be at most 32 characters",
        ),
        (
            vec![("username", "erin"), ("password", "")],
            400,
            "`password` must not be empty",
        ),
        (
            vec![("username", "erin"), ("password", "five5")],
            400,
            "`password` must be at least 6 characters",
        ),
        (
            vec![("username", "er\u{200B}in"), ("password", "secret")],
            400,
            "`username` must not contain invisible characters (U+200B)",
        ),
        (
            vec![("username", "dave"), ("password", "another")],
            409,
            "the user name is already taken",
        ),
        (
            // The same name, but for a byte order mark; and for a joiner outside an emoji.
            vec![("username", "dave\u{FEFF}"), ("password", "another")],
            400,
            "`username` must not contain invisible characters (U+FEFF)",
        ),
    ];
    for (params, code, message) in register_cases {
        let reply = stack.command("/douyin/user/register/", &params).await;
        assert_eq!(reply["status_code"], code, "{params:?}: {reply}");
        assert_eq!(reply["status_msg"], message, "{params:?}");
    }

    // A wrong password and an unknown name get the same answer.
    for (name, password) in [("dave", "wrong"), ("nobody", "secret")] {
        let reply = stack
            .command(
                "/douyin/user/login/",
                &[("username", name), ("password", password)],
            )
            .await;
        assert_eq!(reply["status_code"], 401, "{reply}");
        assert_eq!(reply["status_msg"], "wrong user name or password");
        assert!(reply.get("token").is_none());
    }

    let id = user_id.to_string();
    let forged = {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[2] = parts[2].chars().rev().collect();
        parts.join(".")
    };
    let other_key = http_api::auth::Tokens::new(&infra::settings::AuthSettings {
        jwt_secret: infra::settings::secret("a different secret, also long enough"),
        token_ttl_secs: 3600,
    })
    .unwrap();
    let signed_elsewhere = other_key.issue(user_id.try_into().unwrap());
    let expired = http_api::auth::Tokens::new(&stack.settings.auth)
        .unwrap()
        .issue_at(
            user_id.try_into().unwrap(),
            chrono::Utc::now().timestamp() - 7200,
        );
    let too_big = (1_i64 << 53).to_string();
    let user_cases: Vec<Case> = vec![
        (
            vec![("user_id", &id)],
            401,
            "`token` is required: log in first",
        ),
        (
            vec![("user_id", &id), ("token", "garbage")],
            401,
            "the token is not valid",
        ),
        (
            vec![("user_id", &id), ("token", &forged)],
            401,
            "the token is not valid",
        ),
        (
            vec![("user_id", &id), ("token", &signed_elsewhere)],
            401,
            "the token is not valid",
        ),
        (
            vec![("user_id", &id), ("token", &expired)],
            401,
            "the token has expired, log in again",
        ),
        (
            vec![("user_id", "abc"), ("token", &token)],
            400,
            "`user_id` must be an integer",
        ),
        (
            vec![("user_id", &too_big), ("token", &token)],
            400,
            "`user_id` must be between 1 and 9007199254740991",
        ),
        (
            vec![("user_id", "424242"), ("token", &token)],
            404,
            "user 424242 does not exist",
        ),
    ];
    for (params, code, message) in user_cases {
        let reply = stack.query("/douyin/user/", &params).await;
        assert_eq!(reply["status_code"], code, "{params:?}: {reply}");
        assert_eq!(reply["status_msg"], message, "{params:?}");
        assert!(reply.get("user").is_none());
    }

    // Unknown routes answer with the envelope too.
    let missing = stack.command("/douyin/nothing/here/", &[]).await;
    assert_eq!(missing["status_code"], 404);

    assert_eq!(
        stack.count_events().await,
        events_before,
        "a refused request wrote events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_is_applied_once_and_does_not_stall_the_projector() {
    let stack = TestStack::spawn().await;
    let (first, token) = stack.registered("frank", "secret").await;
    stack.wait_for_user(first, &token).await;

    // As if a relay died after the broker took the events and before it removed them from
    // the outbox: they are queued, and published, a second time.
    sqlx::query(
        "INSERT INTO outbox (aggregate_type, aggregate_id, sequence)
         SELECT aggregate_type, aggregate_id, sequence FROM events ORDER BY recorded_at",
    )
    .execute(&stack.event_store)
    .await
    .unwrap();
    sqlx::query("NOTIFY outbox")
        .execute(&stack.event_store)
        .await
        .unwrap();

    // Events after the repeats are still projected...
    let (second, token) = stack.registered("grace", "secret").await;
    stack.wait_for_user(second, &token).await;
    // ...and the repeats changed nothing.
    let (profiles, applied): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT max(sequence) FROM applied_sequences)",
    )
    .fetch_one(&stack.read_store)
    .await
    .unwrap();
    assert_eq!((profiles, applied), (2, 1));
    let republished = infra::testing::read_topic(
        &stack.settings.kafka,
        &format!("{}user", stack.settings.kafka.kafka_topic_prefix),
        |events| events.len() >= 3,
        Duration::from_secs(10),
        Duration::from_millis(100),
    );
    assert_eq!(republished.len(), 3, "frank twice, grace once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_readable_soon_after_registering() {
    let stack = TestStack::spawn().await;
    // The first registration waits for the projector's consumer group to form.
    let (id, token) = stack.registered("warm-up", "secret").await;
    stack.wait_for_user(id, &token).await;

    let mut lags = Vec::new();
    for i in 0..20 {
        let (id, token) = stack.registered(&format!("user-{i}"), "secret").await;
        lags.push(stack.wait_for_user(id, &token).await.1);
    }
    lags.sort();
    let median = lags[lags.len() / 2];
    eprintln!(
        "register reply to readable: median {median:?}, worst {:?}",
        lags[lags.len() - 1]
    );
    // Not a speed check (`make bench` measures the lag): "soon", on a loaded test machine.
    assert!(median < Duration::from_secs(2), "median lag {median:?}");
}
