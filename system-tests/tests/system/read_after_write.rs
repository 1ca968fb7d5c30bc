//! A client that writes and then reads at once sees its write, as the public test suites of
//! this API expect: every write is followed by the read that should show it, with no sleep
//! and no polling, through a query API other than the writer's command API's partner, with
//! two of each service running (docs/api.md, "Read after write").

use serde_json::Value;
use system_tests::{sample_video, TestStack};

/// How parameters travel: the suites send some in the query string, some in the form.
#[derive(Clone, Copy)]
enum Sent {
    Query,
    Form,
}

/// Two command APIs and two query APIs over one set of stores; each write goes to one
/// command API and its read to the query API of the other pair.
struct Pairs {
    stack: TestStack,
    replicas: system_tests::Replicas,
}

impl Pairs {
    /// The command API of pair `writer` (0 or 1).
    fn command_url(&self, writer: usize) -> &str {
        [&self.stack.command_url, &self.replicas.command_url][writer]
    }

    /// The query API of the pair other than `writer`'s.
    fn other_query_url(&self, writer: usize) -> &str {
        [&self.replicas.query_url, &self.stack.query_url][writer]
    }

    async fn write(&self, writer: usize, sent: Sent, path: &str, params: &[(&str, &str)]) -> Value {
        let request = self
            .stack
            .http
            .post(format!("{}{path}", self.command_url(writer)));
        let request = match sent {
            Sent::Query => request.query(params),
            Sent::Form => request.form(params),
        };
        let reply: Value = request
            .send()
            .await
            .expect("the command API answers")
            .json()
            .await
            .expect("an envelope");
        assert_eq!(reply["status_code"], 0, "{path} refused: {reply}");
        assert_eq!(
            reply["status_msg"], "success",
            "{path} answered before it was readable: {reply}"
        );
        reply
    }

    /// A read, at once, through the query API the writer `writer` did not use.
    async fn read(&self, writer: usize, path: &str, params: &[(&str, &str)]) -> Value {
        let reply: Value = self
            .stack
            .http
            .get(format!("{}{path}", self.other_query_url(writer)))
            .query(params)
            .send()
            .await
            .expect("the query API answers")
            .json()
            .await
            .expect("an envelope");
        assert_eq!(reply["status_code"], 0, "{path} refused: {reply}");
        reply
    }
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| item["id"].as_i64().expect("an id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_readable_at_once_through_another_instance() {
    // A generous bound: the machine runs many tests at once, and a bound hit is what this
    // test would catch (its answer says "saved", and the read after it may miss the write).
    let stack = TestStack::spawn_with(|settings| {
        settings.read_after_write.read_after_write_wait_ms = 20_000;
    })
    .await;
    let replicas = stack.spawn_replicas().await;
    let pairs = Pairs { stack, replicas };

    // Sign-up → the user's card, by id and as "the token's own user".
    let signed_up = pairs
        .write(
            0,
            Sent::Form,
            "/douyin/user/register/",
            &[("username", "ann"), ("password", "password1")],
        )
        .await;
    let (ann_token, ann) = (
        signed_up["token"].as_str().unwrap().to_owned(),
        signed_up["user_id"].as_i64().unwrap().to_string(),
    );
    let card = pairs
        .read(
            0,
            "/douyin/user/",
            &[("user_id", &ann), ("token", &ann_token)],
        )
        .await;
    assert_eq!(card["user"]["name"], "ann");
    let own = pairs
        .read(0, "/douyin/user/", &[("token", &ann_token)])
        .await;
    assert_eq!(own["user"]["id"].to_string(), ann);
    let signed_up = pairs
        .write(
            1,
            Sent::Query,
            "/douyin/user/register/",
            &[("username", "bob"), ("password", "password1")],
        )
        .await;
    let (bob_token, bob) = (
        signed_up["token"].as_str().unwrap().to_owned(),
        signed_up["user_id"].as_i64().unwrap().to_string(),
    );
    let card = pairs
        .read(
            1,
            "/douyin/user/",
            &[("user_id", &bob), ("token", &ann_token)],
        )
        .await;
    assert_eq!(card["user"]["name"], "bob");

    // Publish → the publish list, the feed and the author's work count.
    let form = reqwest::multipart::Form::new()
        .text("token", ann_token.clone())
        .text("title", "first light")
        .part(
            "data",
            reqwest::multipart::Part::bytes(sample_video()).file_name("clip.mp4"),
        );
    let published: Value = pairs
        .stack
        .http
        .post(format!("{}/douyin/publish/action/", pairs.command_url(0)))
        .query(&[("token", &ann_token)])
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(published["status_code"], 0, "{published}");
    assert_eq!(published["status_msg"], "success", "{published}");
    let listed = pairs
        .read(
            0,
            "/douyin/publish/list/",
            &[("user_id", &ann), ("token", &bob_token)],
        )
        .await;
    assert_eq!(listed["video_list"][0]["title"], "first light", "{listed}");
    let video = listed["video_list"][0]["id"].as_i64().unwrap().to_string();
    let feed = pairs.read(0, "/douyin/feed/", &[]).await;
    assert_eq!(feed["video_list"][0]["id"].to_string(), video, "{feed}");
    let card = pairs
        .read(
            0,
            "/douyin/user/",
            &[("user_id", &ann), ("token", &bob_token)],
        )
        .await;
    assert_eq!(card["user"]["work_count"], 1, "{card}");

    // Like → the favorite list and the video's count; unlike → gone.
    for (writer, sent, action, count) in [(1, Sent::Form, "1", 1), (0, Sent::Query, "2", 0)] {
        pairs
            .write(
                writer,
                sent,
                "/douyin/favorite/action/",
                &[
                    ("token", &bob_token),
                    ("video_id", &video),
                    ("action_type", action),
                ],
            )
            .await;
        let liked = pairs
            .read(
                writer,
                "/douyin/favorite/list/",
                &[("user_id", &bob), ("token", &bob_token)],
            )
            .await;
        assert_eq!(ids(&liked["video_list"]).len(), count as usize, "{liked}");
        let listed = pairs
            .read(
                writer,
                "/douyin/publish/list/",
                &[("user_id", &ann), ("token", &bob_token)],
            )
            .await;
        assert_eq!(listed["video_list"][0]["favorite_count"], count, "{listed}");
        assert_eq!(
            listed["video_list"][0]["is_favorite"],
            count == 1,
            "{listed}"
        );
    }
    // A repeated unlike decides nothing, and is answered as readable all the same.
    pairs
        .write(
            1,
            Sent::Form,
            "/douyin/favorite/action/",
            &[
                ("token", &bob_token),
                ("video_id", &video),
                ("action_type", "2"),
            ],
        )
        .await;

    // Comment → the comment list and count; deletion → gone.
    let commented = pairs
        .write(
            0,
            Sent::Form,
            "/douyin/comment/action/",
            &[
                ("token", &bob_token),
                ("video_id", &video),
                ("action_type", "1"),
                ("comment_text", "lovely"),
            ],
        )
        .await;
    let comment = commented["comment"]["id"].to_string();
    let comments = pairs
        .read(
            0,
            "/douyin/comment/list/",
            &[("video_id", &video), ("token", &ann_token)],
        )
        .await;
    assert_eq!(
        ids(&comments["comment_list"]),
        vec![comment.parse::<i64>().unwrap()]
    );
    let listed = pairs
        .read(
            0,
            "/douyin/publish/list/",
            &[("user_id", &ann), ("token", &ann_token)],
        )
        .await;
    assert_eq!(listed["video_list"][0]["comment_count"], 1, "{listed}");
    pairs
        .write(
            1,
            Sent::Query,
            "/douyin/comment/action/",
            &[
                ("token", &bob_token),
                ("video_id", &video),
                ("action_type", "2"),
                ("comment_id", &comment),
            ],
        )
        .await;
    let comments = pairs
        .read(
            1,
            "/douyin/comment/list/",
            &[("video_id", &video), ("token", &ann_token)],
        )
        .await;
    assert!(ids(&comments["comment_list"]).is_empty(), "{comments}");
    let listed = pairs
        .read(
            1,
            "/douyin/publish/list/",
            &[("user_id", &ann), ("token", &ann_token)],
        )
        .await;
    assert_eq!(listed["video_list"][0]["comment_count"], 0, "{listed}");

    // Follow → the follow list, the other user's follower list, both counts; unfollow → gone.
    for (writer, sent, action, count) in [(0, Sent::Query, "1", 1), (1, Sent::Form, "2", 0)] {
        pairs
            .write(
                writer,
                sent,
                "/douyin/relation/action/",
                &[
                    ("token", &bob_token),
                    ("to_user_id", &ann),
                    ("action_type", action),
                ],
            )
            .await;
        let following = pairs
            .read(
                writer,
                "/douyin/relation/follow/list/",
                &[("user_id", &bob), ("token", &bob_token)],
            )
            .await;
        assert_eq!(ids(&following["user_list"]).len(), count, "{following}");
        let followers = pairs
            .read(
                writer,
                "/douyin/relation/follower/list/",
                &[("user_id", &ann), ("token", &ann_token)],
            )
            .await;
        assert_eq!(ids(&followers["user_list"]).len(), count, "{followers}");
        let bob_card = pairs
            .read(
                writer,
                "/douyin/user/",
                &[("user_id", &bob), ("token", &ann_token)],
            )
            .await;
        assert_eq!(bob_card["user"]["follow_count"], count, "{bob_card}");
        let ann_card = pairs
            .read(
                writer,
                "/douyin/user/",
                &[("user_id", &ann), ("token", &bob_token)],
            )
            .await;
        assert_eq!(ann_card["user"]["follower_count"], count, "{ann_card}");
        assert_eq!(ann_card["user"]["is_follow"], count == 1, "{ann_card}");
    }

    // Message → the chat, on both sides.
    pairs
        .write(
            1,
            Sent::Form,
            "/douyin/message/action/",
            &[
                ("token", &ann_token),
                ("to_user_id", &bob),
                ("action_type", "1"),
                ("content", "hello bob"),
            ],
        )
        .await;
    for token in [&ann_token, &bob_token] {
        let to = if token == &ann_token { &bob } else { &ann };
        let chat = pairs
            .read(
                1,
                "/douyin/message/chat/",
                &[("token", token), ("to_user_id", to), ("pre_msg_time", "0")],
            )
            .await;
        assert_eq!(chat["message_list"][0]["content"], "hello bob", "{chat}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_projector_down_a_write_is_saved_and_later_ones_do_not_wait() {
    let stack = TestStack::spawn_with(|settings| {
        settings.read_after_write.read_after_write_wait_ms = 5_000;
    })
    .await;
    stack.registered("ann", "password1").await;
    stack.stop_projector();
    // The first write waits to its bound; the next ones, no projector having reported
    // progress since, not at all. Both are durable, and say so.
    for name in ["bob", "cy"] {
        let reply = stack.register(name, "password1").await;
        assert_eq!(reply["status_code"], 0, "{reply}");
        assert_eq!(
            reply["status_msg"], "saved; it will show shortly",
            "{reply}"
        );
    }
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.command_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |reached: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("read_after_write_waits_total")
                    && line.contains(&format!("reached=\"{reached}\""))
            })
            .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(count("bound"), Some(1), "{metrics}");
    assert_eq!(count("stalled"), Some(1), "{metrics}");
    assert_eq!(count("applied"), Some(1), "{metrics}");
}
