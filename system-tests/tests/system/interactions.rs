//! Likes, comments, follows, friends and chat, through HTTP and the real services.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;
use system_tests::TestStack;

/// Parameters sent, and the `status_code` and `status_msg` expected back.
type Case<'a> = (Vec<(&'a str, &'a str)>, i64, &'a str);

fn id(value: &Value) -> String {
    value.as_i64().expect("an id is a JSON number").to_string()
}

async fn like(stack: &TestStack, token: &str, video: &str, action: &str) -> Value {
    stack
        .command(
            "/douyin/favorite/action/",
            &[
                ("token", token),
                ("video_id", video),
                ("action_type", action),
            ],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_likes_and_unlikes_by_many_users_end_in_exact_counts() {
    let stack = TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let video = stack.published(ann, &ann_token, "cats").await;
    let video_id = id(&video["id"]);

    const USERS: usize = 16;
    let users = join_all((0..USERS).map(|i| stack.registered_named(i))).await;
    // Every user taps like twice at once; the odd ones then tap unlike twice at once.
    join_all(users.iter().enumerate().map(|(i, (_, token))| {
        let (stack, video_id) = (&stack, &video_id);
        async move {
            let (a, b) = tokio::join!(
                like(stack, token, video_id, "1"),
                like(stack, token, video_id, "1")
            );
            assert_eq!(
                (a["status_code"].clone(), b["status_code"].clone()),
                (0.into(), 0.into())
            );
            if i % 2 == 1 {
                let (a, b) = tokio::join!(
                    like(stack, token, video_id, "2"),
                    like(stack, token, video_id, "2")
                );
                assert_eq!(a["status_code"], 0, "{a}");
                assert_eq!(b["status_code"], 0, "{b}");
            }
        }
    }))
    .await;

    let likers = (USERS / 2) as i64;
    let author = [("user_id", ann.to_string()), ("token", ann_token.clone())];
    let author: Vec<(&str, &str)> = author.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The events are spread over partitions and batches: the count passes through its final
    // value on the way (a like applied after an unlike) unless every event is in.
    stack.projected_all("like").await;
    let list = stack
        .eventually("/douyin/publish/list/", &author, |reply| {
            reply["video_list"][0]["favorite_count"] == likers
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = stack.query("/douyin/publish/list/", &author).await;
    assert_eq!(
        again["video_list"][0]["favorite_count"], list["video_list"][0]["favorite_count"],
        "counts settle, never overshoot"
    );
    // The author's card may be served from the query API's cache for up to a second after a
    // change whose invalidation was missed (`infra::redis_store::connect_cached`).
    let list = stack
        .eventually("/douyin/publish/list/", &author, |reply| {
            reply["video_list"][0]["author"]["total_favorited"] == likers
        })
        .await;
    assert_eq!(list["video_list"][0]["favorite_count"], likers);
    let like_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'like'")
            .fetch_one(&stack.event_store)
            .await
            .unwrap();
    assert_eq!(
        like_events,
        likers + 2 * likers,
        "one event per change, none per repeat"
    );

    for (i, (user, token)) in users.iter().enumerate() {
        let liked = i % 2 == 0;
        let params = [("user_id", user.to_string()), ("token", token.clone())];
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let favorites = stack.query("/douyin/favorite/list/", &params).await;
        let list = favorites["video_list"].as_array().unwrap();
        assert_eq!(list.len(), usize::from(liked), "{favorites}");
        if liked {
            assert_eq!(list[0]["is_favorite"], true);
            assert_eq!(list[0]["favorite_count"], likers);
        }
        stack
            .user_eventually(*user, token, |me| me["favorite_count"] == i64::from(liked))
            .await;
        let feed = stack.query("/douyin/feed/", &[("token", token)]).await;
        assert_eq!(feed["video_list"][0]["is_favorite"], liked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_are_refused_for_videos_that_do_not_exist_and_unknown_actions() {
    let stack = TestStack::spawn().await;
    let (ann, token) = stack.registered("ann", "password1").await;
    let video = stack.published(ann, &token, "cats").await;
    let video_id = id(&video["id"]);
    let events_before = stack.count_events().await;

    let cases: Vec<Case> = vec![
        (
            vec![
                ("token", &token),
                ("video_id", "424242"),
                ("action_type", "1"),
            ],
            404,
            "video 424242 does not exist",
        ),
        (
            vec![
                ("token", &token),
                ("video_id", &video_id),
                ("action_type", "3"),
            ],
            400,
            "`action_type` must be 1 (like) or 2 (unlike), not \"3\"",
        ),
        (
            vec![("token", &token), ("action_type", "1")],
            400,
            "`video_id` is required",
        ),
        (
            vec![("token", &token), ("video_id", "x"), ("action_type", "1")],
            400,
            "`video_id` must be an integer",
        ),
        (
            vec![("video_id", &video_id), ("action_type", "1")],
            401,
            "`token` is required: log in first",
        ),
        (
            vec![
                ("token", &token),
                ("video_id", &video_id),
                ("action_type", "2"),
            ],
            0,
            "success",
        ),
    ];
    for (params, code, message) in cases {
        let reply = stack.command("/douyin/favorite/action/", &params).await;
        assert_eq!(reply["status_code"], code, "{params:?}: {reply}");
        assert_eq!(reply["status_msg"], message, "{params:?}");
    }
    assert_eq!(
        stack.count_events().await,
        events_before,
        "unliking what is not liked records nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_favorite_list_shows_the_most_recently_liked_first() {
    let stack = TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let first = stack.published(ann, &ann_token, "first").await;
    let second = stack.published(ann, &ann_token, "second").await;
    for video in [&second, &first] {
        assert_eq!(
            like(&stack, &bob_token, &id(&video["id"]), "1").await["status_code"],
            0
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bob_id = bob.to_string();
    let list = stack
        .eventually(
            "/douyin/favorite/list/",
            &[("user_id", &bob_id), ("token", &bob_token)],
            |reply| reply["video_list"].as_array().is_some_and(|l| l.len() == 2),
        )
        .await;
    let titles: Vec<&str> = list["video_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|video| video["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["first", "second"]);
    stack
        .user_eventually(ann, &bob_token, |card| {
            card["total_favorited"] == 2 && card["work_count"] == 2
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_are_listed_newest_first_and_only_their_authors_may_delete_them() {
    let stack = &TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (_, bob_token) = stack.registered("bob", "password1").await;
    let (_, carol_token) = stack.registered("carol", "password1").await;
    let video = stack.published(ann, &ann_token, "cats").await;
    let video_id = id(&video["id"]);

    let post = |token: &str, text: &str| {
        let params = [
            ("token", token.to_owned()),
            ("video_id", video_id.clone()),
            ("action_type", "1".to_owned()),
            ("comment_text", text.to_owned()),
        ];
        async move {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            stack.command("/douyin/comment/action/", &params).await
        }
    };
    let first = post(&bob_token, "first!").await;
    assert_eq!(first["status_code"], 0, "{first}");
    assert_eq!(first["comment"]["content"], "first!");
    assert_eq!(first["comment"]["user"]["name"], "bob");
    let date = first["comment"]["create_date"].as_str().unwrap();
    // Dates are shown in China's time zone (UTC+8) by default.
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    assert_eq!(
        date,
        chrono::Utc::now()
            .with_timezone(&china)
            .format("%m-%d")
            .to_string()
    );
    let second = post(&bob_token, "second").await;
    assert_eq!(second["status_code"], 0, "{second}");
    for (text, message) in [
        ("", "`comment_text` must not be empty"),
        (
            &"x".repeat(501)[..],
            "`comment_text` must be at most 500 characters",
        ),
    ] {
        let refused = post(&bob_token, text).await;
        assert_eq!(refused["status_code"], 400);
        assert_eq!(refused["status_msg"], message);
    }

    let list = stack
        .eventually(
            "/douyin/comment/list/",
            &[("video_id", &video_id)],
            |reply| {
                reply["comment_list"]
                    .as_array()
                    .is_some_and(|l| l.len() == 2)
            },
        )
        .await;
    assert_eq!(list["comment_list"][0]["content"], "second");
    assert_eq!(list["comment_list"][1]["content"], "first!");
    stack
        .eventually("/douyin/feed/", &[], |feed| {
            feed["video_list"][0]["comment_count"] == 2
        })
        .await;

    let delete = |token: &str, comment: &Value| {
        let params = [
            ("token", token.to_owned()),
            ("video_id", video_id.clone()),
            ("action_type", "2".to_owned()),
            ("comment_id", id(comment)),
        ];
        async move {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            stack.command("/douyin/comment/action/", &params).await
        }
    };
    let stranger = delete(&carol_token, &first["comment"]["id"]).await;
    assert_eq!(stranger["status_code"], 403, "{stranger}");
    assert_eq!(
        delete(&ann_token, &first["comment"]["id"]).await["status_code"],
        0,
        "the video's author"
    );
    assert_eq!(
        delete(&bob_token, &second["comment"]["id"]).await["status_code"],
        0,
        "the comment's author"
    );
    assert_eq!(
        delete(&bob_token, &second["comment"]["id"]).await["status_code"],
        0,
        "twice is once"
    );
    let unknown = delete(&bob_token, &Value::from(424242)).await;
    assert_eq!(unknown["status_code"], 404, "{unknown}");

    stack
        .eventually(
            "/douyin/comment/list/",
            &[("video_id", &video_id)],
            |reply| reply["comment_list"] == serde_json::json!([]),
        )
        .await;
    // The list is in Postgres, the count in Redis: the projector changes the second just
    // after the first, so the count is waited for too.
    stack
        .eventually("/douyin/feed/", &[], |feed| {
            feed["video_list"][0]["comment_count"] == 0
        })
        .await;

    let nowhere = stack
        .command(
            "/douyin/comment/action/",
            &[
                ("token", &bob_token),
                ("video_id", "424242"),
                ("action_type", "1"),
                ("comment_text", "hi"),
            ],
        )
        .await;
    assert_eq!(nowhere["status_code"], 404, "{nowhere}");
    let listed_nowhere = stack
        .query("/douyin/comment/list/", &[("video_id", "424242")])
        .await;
    assert_eq!(listed_nowhere["status_code"], 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_count_once_and_friends_see_their_latest_message() {
    let stack = &TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let (_, carol_token) = stack.registered("carol", "password1").await;
    let relation = |token: String, to: i64, action: &'static str| async move {
        stack
            .command(
                "/douyin/relation/action/",
                &[
                    ("token", &token),
                    ("to_user_id", &to.to_string()),
                    ("action_type", action),
                ],
            )
            .await
    };

    let (a, b) = tokio::join!(
        relation(ann_token.clone(), bob, "1"),
        relation(ann_token.clone(), bob, "1")
    );
    assert_eq!(
        (a["status_code"].as_i64(), b["status_code"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        relation(carol_token.clone(), bob, "1").await["status_code"],
        0
    );
    assert_eq!(
        relation(carol_token.clone(), ann, "2").await["status_code"],
        0,
        "unfollowing a stranger"
    );
    let myself = relation(ann_token.clone(), ann, "1").await;
    assert_eq!(myself["status_code"], 400);
    assert_eq!(myself["status_msg"], "you cannot follow yourself");
    let nobody = relation(ann_token.clone(), 424242, "1").await;
    assert_eq!(nobody["status_code"], 404);
    assert_eq!(nobody["status_msg"], "user 424242 does not exist");
    assert_eq!(
        relation(ann_token.clone(), bob, "5").await["status_code"],
        400
    );

    let bob_id = bob.to_string();
    let followers = stack
        .eventually(
            "/douyin/relation/follower/list/",
            &[("user_id", &bob_id), ("token", &ann_token)],
            |reply| reply["user_list"].as_array().is_some_and(|l| l.len() == 2),
        )
        .await;
    let names: HashSet<&str> = followers["user_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, HashSet::from(["ann", "carol"]));
    // Ann follows Bob: his card, as she sees it.
    stack
        .user_eventually(bob, &ann_token, |card| {
            card["follower_count"] == 2 && card["is_follow"] == true
        })
        .await;
    let ann_id = ann.to_string();
    let following = stack
        .query(
            "/douyin/relation/follow/list/",
            &[("user_id", &ann_id), ("token", &ann_token)],
        )
        .await;
    assert_eq!(following["user_list"][0]["id"], bob);
    assert_eq!(following["user_list"][0]["is_follow"], true);
    stack
        .user_eventually(ann, &ann_token, |card| card["follow_count"] == 1)
        .await;

    // Not friends until bob follows back.
    let friends = stack
        .query(
            "/douyin/relation/friend/list/",
            &[("user_id", &ann_id), ("token", &ann_token)],
        )
        .await;
    assert_eq!(friends["user_list"], serde_json::json!([]));
    assert_eq!(
        relation(bob_token.clone(), ann, "1").await["status_code"],
        0
    );
    let send = |token: String, to: i64, content: &'static str| async move {
        stack
            .command(
                "/douyin/message/action/",
                &[
                    ("token", &token),
                    ("to_user_id", &to.to_string()),
                    ("action_type", "1"),
                    ("content", content),
                ],
            )
            .await
    };
    assert_eq!(
        send(ann_token.clone(), bob, "hi bob").await["status_code"],
        0
    );
    assert_eq!(
        send(bob_token.clone(), ann, "hello ann").await["status_code"],
        0
    );
    let friends = stack
        .eventually(
            "/douyin/relation/friend/list/",
            &[("user_id", &ann_id), ("token", &ann_token)],
            |reply| reply["user_list"][0]["message"] == "hello ann",
        )
        .await;
    let friend = &friends["user_list"][0];
    assert_eq!(friend["id"], bob);
    assert_eq!(friend["name"], "bob");
    assert_eq!(friend["msgType"], 0, "ann received the latest message");
    let of_bob = stack
        .query(
            "/douyin/relation/friend/list/",
            &[("user_id", &bob_id), ("token", &bob_token)],
        )
        .await;
    assert_eq!(of_bob["user_list"][0]["id"], ann);
    assert_eq!(
        of_bob["user_list"][0]["msgType"], 1,
        "bob sent the latest message"
    );

    assert_eq!(
        relation(ann_token.clone(), bob, "2").await["status_code"],
        0
    );
    stack
        .eventually(
            "/douyin/relation/friend/list/",
            &[("user_id", &ann_id), ("token", &ann_token)],
            |reply| reply["user_list"] == serde_json::json!([]),
        )
        .await;
    // Carol still follows Bob.
    stack
        .user_eventually(bob, &carol_token, |card| {
            card["follower_count"] == 1 && card["is_follow"] == true
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_polling_returns_every_message_once_in_order() {
    let stack = TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let (ann_id, bob_id) = (ann.to_string(), bob.to_string());

    const MESSAGES: usize = 12;
    let sending = async {
        for i in 0..MESSAGES {
            let (token, to) = if i % 3 == 2 {
                (&bob_token, &ann_id)
            } else {
                (&ann_token, &bob_id)
            };
            let content = format!("message {i}");
            let reply = stack
                .command(
                    "/douyin/message/action/",
                    &[
                        ("token", token),
                        ("to_user_id", to),
                        ("action_type", "1"),
                        ("content", &content),
                    ],
                )
                .await;
            assert_eq!(reply["status_code"], 0, "{reply}");
        }
    };
    // Bob polls as the client does, with the newest time he holds, while messages arrive.
    let polling = async {
        let mut received: Vec<Value> = vec![];
        let mut pre_msg_time = 0_i64;
        let start = std::time::Instant::now();
        while received.len() < MESSAGES && start.elapsed() < Duration::from_secs(10) {
            let time = pre_msg_time.to_string();
            let reply = stack
                .query(
                    "/douyin/message/chat/",
                    &[
                        ("token", &bob_token),
                        ("to_user_id", &ann_id),
                        ("pre_msg_time", &time),
                    ],
                )
                .await;
            assert_eq!(reply["status_code"], 0, "{reply}");
            for message in reply["message_list"].as_array().unwrap() {
                pre_msg_time = message["create_time"].as_i64().unwrap();
                received.push(message.clone());
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        received
    };
    let ((), received) = tokio::join!(sending, polling);
    let contents: Vec<String> = received
        .iter()
        .map(|message| message["content"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("message {i}")).collect();
    assert_eq!(contents, expected, "each message once, oldest first");
    let times: Vec<i64> = received
        .iter()
        .map(|m| m["create_time"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] < pair[1]), "{times:?}");
    assert_eq!(received[2]["from_user_id"], bob);
    assert_eq!(received[2]["to_user_id"], ann);

    let snapshots: i64 =
        sqlx::query_scalar("SELECT count(*) FROM snapshots WHERE aggregate_type = 'conversation'")
            .fetch_one(&stack.event_store)
            .await
            .unwrap();
    assert_eq!(
        snapshots, 1,
        "a long chat is loaded from a snapshot, not from its first message"
    );

    // Ann sees the same conversation from her side.
    let ann_view = stack
        .query(
            "/douyin/message/chat/",
            &[("token", &ann_token), ("to_user_id", &bob_id)],
        )
        .await;
    assert_eq!(ann_view["message_list"].as_array().unwrap().len(), MESSAGES);

    let refusals: Vec<Case> = vec![
        (
            vec![
                ("token", &ann_token),
                ("to_user_id", &ann_id),
                ("action_type", "1"),
                ("content", "me"),
            ],
            400,
            "you cannot send a message to yourself",
        ),
        (
            vec![
                ("token", &ann_token),
                ("to_user_id", "424242"),
                ("action_type", "1"),
                ("content", "hi"),
            ],
            404,
            "user 424242 does not exist",
        ),
        (
            vec![
                ("token", &ann_token),
                ("to_user_id", &bob_id),
                ("action_type", "2"),
                ("content", "hi"),
            ],
            400,
            "`action_type` must be 1 (send), not \"2\"",
        ),
        (
            vec![
                ("token", &ann_token),
                ("to_user_id", &bob_id),
                ("action_type", "1"),
                ("content", " "),
            ],
            400,
            "`content` must not be empty",
        ),
    ];
    let events_before = stack.count_events().await;
    for (params, code, message) in refusals {
        let reply = stack.command("/douyin/message/action/", &params).await;
        assert_eq!(reply["status_code"], code, "{reply}");
        assert_eq!(reply["status_msg"], message);
    }
    assert_eq!(stack.count_events().await, events_before);
}
