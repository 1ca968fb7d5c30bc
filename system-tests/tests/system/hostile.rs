//! Requests as an attacker sends them: floods, oversized bodies and query strings, invisible
//! characters. Each is refused in the envelope, with nothing stored, and never turns into a
//! server error.

use std::time::Duration;

use futures::future::join_all;
use http_api::rate_limit::Rate;
use serde_json::Value;
use system_tests::TestStack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AN_HOUR: Duration = Duration::from_secs(3600);

/// A POST to the command API as nginx forwards one from `client`.
async fn post_from(stack: &TestStack, client: &str, path: &str, params: &[(&str, &str)]) -> Reply {
    let response = stack
        .http
        .post(format!("{}{path}", stack.command_url))
        .header("X-Real-IP", client)
        // What a client may write itself, and is never believed.
        .header("X-Forwarded-For", "192.0.2.250")
        .query(params)
        .send()
        .await
        .expect("the command API answers");
    Reply::of(response).await
}

/// An answer: its HTTP status, `Retry-After`, and JSON body.
struct Reply {
    http: u16,
    retry_after: Option<u64>,
    body: Value,
}

impl Reply {
    async fn of(response: reqwest::Response) -> Self {
        let http = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().parse().unwrap());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| {
            panic!("HTTP {http} answered with a body that is not JSON: {text:?}")
        });
        Self {
            http,
            retry_after,
            body,
        }
    }

    fn code(&self) -> i64 {
        self.body["status_code"].as_i64().unwrap()
    }

    /// A refusal the client shows: HTTP 200, the code in the envelope.
    fn assert_refused(&self, code: i64) {
        assert_eq!((self.http, self.code()), (200, code), "{}", self.body);
        assert!(self.body["status_msg"]
            .as_str()
            .is_some_and(|msg| !msg.is_empty()));
    }

    fn assert_rate_limited(&self) {
        self.assert_refused(429);
        assert!(
            self.retry_after.is_some_and(|seconds| seconds >= 1),
            "no Retry-After"
        );
        let message = self.body["status_msg"].as_str().unwrap();
        assert!(message.contains("try again in"), "{message}");
    }
}

fn register<'a>(name: &'a str, password: &'a str) -> [(&'a str, &'a str); 2] {
    [("username", name), ("password", password)]
}

async fn count_events(stack: &TestStack, aggregate_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
        .bind(aggregate_type)
        .fetch_one(&stack.event_store)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_past_the_rate_of_an_address_are_refused_with_the_time_to_retry() {
    let stack = TestStack::spawn_with(|settings| {
        settings.rate_limits.rate_limit = "on".into();
        settings.rate_limits.rate_limit_register = Rate::new(2, AN_HOUR);
    })
    .await;
    let path = "/douyin/user/register/";
    for name in ["first", "second"] {
        let reply = post_from(&stack, "203.0.113.1", path, &register(name, "password")).await;
        assert_eq!(reply.code(), 0, "{}", reply.body);
    }
    let accounts = count_events(&stack, "account").await;

    let refused = post_from(&stack, "203.0.113.1", path, &register("third", "password")).await;
    refused.assert_rate_limited();
    assert_eq!(
        count_events(&stack, "account").await,
        accounts,
        "a refused sign-up stored something"
    );

    // Another address is not held back, and a forged X-Forwarded-For changes nothing (it was
    // sent with every request above).
    let elsewhere = post_from(&stack, "203.0.113.2", path, &register("third", "password")).await;
    assert_eq!(elsewhere.code(), 0, "{}", elsewhere.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guesses_are_slowed_per_name_and_address_and_the_owner_still_logs_in() {
    let stack = TestStack::spawn_with(|settings| {
        settings.rate_limits.rate_limit = "on".into();
        settings.rate_limits.rate_limit_failed_login = Rate::new(2, AN_HOUR);
    })
    .await;
    stack.registered("owner", "the-right-one").await;
    let login = "/douyin/user/login/";

    // Logging in with the right password is no guess, however often.
    for _ in 0..4 {
        let right = post_from(
            &stack,
            "192.0.2.10",
            login,
            &register("owner", "the-right-one"),
        )
        .await;
        assert_eq!(right.code(), 0, "{}", right.body);
    }
    // Guesses sent at once get no more tries than guesses sent one by one.
    let guesses = join_all((0..8).map(|_| async {
        let params = register("owner", "guess");
        post_from(&stack, "203.0.113.66", login, &params).await
    }))
    .await;
    let checked = guesses.iter().filter(|reply| reply.code() == 401).count();
    let held = guesses.iter().filter(|reply| reply.code() == 429).count();
    assert_eq!(
        (checked, held),
        (2, 6),
        "simultaneous guesses past the limit"
    );

    for _ in 0..2 {
        let wrong = post_from(&stack, "198.51.100.66", login, &register("owner", "guess")).await;
        wrong.assert_refused(401);
    }
    // The guesser is held back, even with the right password...
    let held = post_from(
        &stack,
        "198.51.100.66",
        login,
        &register("owner", "the-right-one"),
    )
    .await;
    held.assert_rate_limited();
    // ...while the owner, elsewhere, logs in.
    let owner = post_from(
        &stack,
        "192.0.2.10",
        login,
        &register("owner", "the-right-one"),
    )
    .await;
    assert_eq!(owner.code(), 0, "{}", owner.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_from_many_networks_are_slowed_per_account_and_its_owner_still_logs_in() {
    let stack = TestStack::spawn_with(|settings| {
        settings.rate_limits.rate_limit = "on".into();
        settings.rate_limits.rate_limit_failed_login = Rate::new(2, AN_HOUR);
        settings.rate_limits.rate_limit_failed_login_account = Rate::new(3, AN_HOUR);
    })
    .await;
    stack.registered("owner", "the-right-one").await;
    let login = "/douyin/user/login/";
    let owner_home = "2001:db8:aaaa:1::10";
    let signed_in = post_from(
        &stack,
        owner_home,
        login,
        &register("owner", "the-right-one"),
    )
    .await;
    assert_eq!(signed_in.code(), 0, "{}", signed_in.body);

    // One guess from each of three /64s of the same /48: each within its own allowance.
    for network in 1..=3 {
        let address = format!("2001:db8:bbbb:{network}::1");
        let wrong = post_from(&stack, &address, login, &register("owner", "guess")).await;
        wrong.assert_refused(401);
    }
    // The account's allowance is spent: a fourth /64 is held back, the right password too.
    let held = post_from(
        &stack,
        "2001:db8:bbbb:4::1",
        login,
        &register("owner", "the-right-one"),
    )
    .await;
    held.assert_rate_limited();
    // The owner, from where they signed in before (another address of that /64 too), is not.
    for address in [owner_home, "2001:db8:aaaa:1::99"] {
        let owner = post_from(&stack, address, login, &register("owner", "the-right-one")).await;
        assert_eq!(owner.code(), 0, "{}", owner.body);
    }
    // Another account is untouched by the guesses at this one.
    stack.registered("neighbour", "password1").await;
    let other = post_from(
        &stack,
        "2001:db8:bbbb:5::1",
        login,
        &register("neighbour", "password1"),
    )
    .await;
    assert_eq!(other.code(), 0, "{}", other.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_rate_of_a_user_are_refused() {
    let stack = TestStack::spawn_with(|settings| {
        settings.rate_limits.rate_limit = "on".into();
        settings.rate_limits.rate_limit_write = Rate::new(3, AN_HOUR);
    })
    .await;
    let (ann, ann_token) = stack.registered("ann", "password").await;
    let (bob, bob_token) = stack.registered("bob", "password").await;
    let follow = |token: String, to: i64, action: &'static str| {
        let stack = &stack;
        async move {
            let to = to.to_string();
            let params = [
                ("token", token.as_str()),
                ("to_user_id", &to),
                ("action_type", action),
            ];
            post_from(stack, "203.0.113.9", "/douyin/relation/action/", &params).await
        }
    };
    for action in ["1", "2", "1"] {
        assert_eq!(follow(ann_token.clone(), bob, action).await.code(), 0);
    }
    let follows = count_events(&stack, "follow").await;
    follow(ann_token.clone(), bob, "2")
        .await
        .assert_rate_limited();
    assert_eq!(count_events(&stack, "follow").await, follows);
    // Counted per user, not per address.
    assert_eq!(follow(bob_token, ann, "1").await.code(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_beyond_capacity_are_busy_rather_than_queued() {
    let stack = TestStack::spawn_with(|settings| {
        settings.passwords.password_hashes_at_once = Some(1);
        settings.passwords.password_hash_wait_ms = 1;
    })
    .await;
    let names: Vec<String> = (0..12).map(|i| format!("rush{i}")).collect();
    let replies = join_all(names.iter().map(|name| async {
        let params = register(name, "password");
        post_from(&stack, "203.0.113.20", "/douyin/user/register/", &params).await
    }))
    .await;

    let succeeded = replies.iter().filter(|reply| reply.code() == 0).count();
    let busy: Vec<&Reply> = replies.iter().filter(|reply| reply.code() == 503).collect();
    assert_eq!(
        succeeded + busy.len(),
        names.len(),
        "an answer that is neither"
    );
    assert!(
        succeeded >= 1 && !busy.is_empty(),
        "{succeeded} succeeded, {} busy",
        busy.len()
    );
    for reply in busy {
        reply.assert_refused(503);
        assert!(reply.retry_after.is_some(), "no Retry-After");
    }
    // One account and one profile for each success, nothing for the busy ones.
    assert_eq!(count_events(&stack, "account").await, succeeded as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_query_strings_are_bounded_before_they_are_read() {
    let stack = TestStack::spawn().await;
    let (_, token) = stack.registered("ann", "password").await;
    let (bob, _) = stack.registered("bob", "password").await;
    let bob = bob.to_string();
    let events = stack.count_events().await;

    // A form body over 64 KiB, declared: refused unread.
    let big_form = format!(
        "token={token}&to_user_id={bob}&action_type=1&pad={}",
        "x".repeat(70_000)
    );
    let reply = stack
        .http
        .post(format!("{}/douyin/relation/action/", stack.command_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big_form)
        .send()
        .await
        .unwrap();
    Reply::of(reply).await.assert_refused(413);

    // Too many fields, even small ones.
    let mut form = reqwest::multipart::Form::new()
        .text("token", token.clone())
        .text("to_user_id", bob.clone())
        .text("action_type", "1");
    for i in 0..14 {
        form = form.text(format!("extra{i}"), "x");
    }
    let reply = reqwest::Client::new()
        .post(format!("{}/douyin/relation/action/", stack.command_url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    Reply::of(reply).await.assert_refused(400);

    // A multipart body with no declared length (chunked): cut off at 64 KiB. The server may
    // answer before the client has sent it all, and close the connection.
    let chunks = futures::stream::iter((0..64).map(|i| {
        let mut chunk = if i == 0 {
            b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n".to_vec()
        } else {
            vec![]
        };
        chunk.resize(chunk.len() + 64 * 1024, b'x');
        Ok::<_, std::io::Error>(chunk)
    }));
    let flood = reqwest::Client::new()
        .post(format!("{}/douyin/relation/action/", stack.command_url))
        .header("content-type", "multipart/form-data; boundary=b")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    if let Ok(reply) = flood {
        Reply::of(reply).await.assert_refused(413);
    }

    // 300 MiB declared on a read route: answered after the headers, nothing read.
    let mut connection =
        tokio::net::TcpStream::connect(stack.query_url.trim_start_matches("http://"))
            .await
            .unwrap();
    let head = "GET /douyin/feed/ HTTP/1.1\r\nHost: x\r\n\
                Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 314572800\r\n\r\n";
    connection.write_all(head.as_bytes()).await.unwrap();
    connection.write_all(&[b'x'; 64 * 1024]).await.unwrap();
    let mut answer = vec![];
    // The server closes the connection after answering (it may reset it: the rest of the
    // body is never read), so what was read counts, whatever the read's ending.
    let _ended = tokio::time::timeout(Duration::from_secs(5), connection.read_to_end(&mut answer))
        .await
        .expect("answered and closed without waiting for the body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains(r#""status_code":413"#), "{answer}");
    assert_eq!(stack.query("/douyin/feed/", &[]).await["status_code"], 0);

    // Query strings: a 1,000-character message in Chinese fits (about 9 KiB encoded)...
    let long_message = "消".repeat(1000);
    let sent = stack
        .command(
            "/douyin/message/action/",
            &[
                ("token", &token),
                ("to_user_id", &bob),
                ("action_type", "1"),
                ("content", &long_message),
            ],
        )
        .await;
    assert_eq!(sent["status_code"], 0, "{sent}");
    // ...one over 16 KiB does not.
    let too_long = stack
        .command(
            "/douyin/message/action/",
            &[
                ("token", &token),
                ("to_user_id", &bob),
                ("action_type", "1"),
                ("content", &"消".repeat(2000)),
            ],
        )
        .await;
    assert_eq!(too_long["status_code"], 414, "{too_long}");
    assert_eq!(
        stack.count_events().await,
        events + 1,
        "only the message that fits is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_and_bidi_overrides_are_refused_never_a_server_error() {
    let stack = TestStack::spawn().await;
    let (author, token) = stack.registered("ann", "password").await;
    let (bob, _) = stack.registered("bob", "password").await;
    let video = stack.published(author, &token, "clip").await;
    let video = video["id"].to_string();
    let bob = bob.to_string();
    let events = stack.count_events().await;

    let comment = |text: &'static str| {
        let (stack, token, video) = (&stack, &token, &video);
        async move {
            stack
                .command(
                    "/douyin/comment/action/",
                    &[
                        ("token", token),
                        ("video_id", video),
                        ("action_type", "1"),
                        ("comment_text", text),
                    ],
                )
                .await
        }
    };
    for text in [
        "\0",
        "a\0b",
        "bell\u{7}",
        "\u{1b}[31mred",
        "abc\u{202E}fdp.exe",
        "x\u{2066}y",
    ] {
        let reply = comment(text).await;
        assert_eq!(reply["status_code"], 400, "{text:?}: {reply}");
    }
    let message = stack
        .command(
            "/douyin/message/action/",
            &[
                ("token", &token),
                ("to_user_id", &bob),
                ("action_type", "1"),
                ("content", "hi\0"),
            ],
        )
        .await;
    assert_eq!(message["status_code"], 400, "{message}");
    let title = stack
        .publish(&token, "bad\u{202E}title", system_tests::sample_video())
        .await;
    assert_eq!(title["status_code"], 400, "{title}");
    assert_eq!(
        stack.count_events().await,
        events,
        "a refused text was stored"
    );

    // Line breaks are part of a comment.
    let lines = comment("first line\nsecond line").await;
    assert_eq!(lines["status_code"], 0, "{lines}");
    assert_eq!(lines["comment"]["content"], "first line\nsecond line");
}
