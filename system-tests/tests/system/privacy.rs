//! What one user may see of another's: lists of others are public in the client, private
//! messages are only ever shown to the two people who exchanged them.

use serde_json::Value;
use system_tests::TestStack;

async fn follow(stack: &TestStack, token: &str, to: i64) {
    let reply = stack
        .command(
            "/douyin/relation/action/",
            &[
                ("token", token),
                ("to_user_id", &to.to_string()),
                ("action_type", "1"),
            ],
        )
        .await;
    assert_eq!(reply["status_code"], 0, "{reply}");
}

async fn send(stack: &TestStack, token: &str, to: i64, content: &str) {
    let reply = stack
        .command(
            "/douyin/message/action/",
            &[
                ("token", token),
                ("to_user_id", &to.to_string()),
                ("action_type", "1"),
                ("content", content),
            ],
        )
        .await;
    assert_eq!(reply["status_code"], 0, "{reply}");
}

/// `user`'s friend list as `token`'s holder asks for it, once it lists `friend` with `message`.
async fn friend_list_showing(
    stack: &TestStack,
    user: i64,
    token: &str,
    friend: i64,
    message: &str,
) -> Value {
    let user = user.to_string();
    let reply = stack
        .eventually(
            "/douyin/relation/friend/list/",
            &[("user_id", &user), ("token", token)],
            |reply| {
                reply["user_list"].as_array().is_some_and(|list| {
                    list.iter()
                        .any(|f| f["id"] == friend && f["message"] == message)
                })
            },
        )
        .await;
    reply["user_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == friend)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_list_shows_only_messages_the_requesting_user_exchanged() {
    let stack = &TestStack::spawn().await;
    let (ann, ann_token) = stack.registered("ann", "password1").await;
    let (bob, bob_token) = stack.registered("bob", "password1").await;
    let (carol, carol_token) = stack.registered("carol", "password1").await;
    let (_, dave_token) = stack.registered("dave", "password1").await;
    // Ann and Bob are friends, and so are Bob and Carol.
    follow(stack, &ann_token, bob).await;
    follow(stack, &bob_token, ann).await;
    follow(stack, &bob_token, carol).await;
    follow(stack, &carol_token, bob).await;
    send(stack, &bob_token, ann, "a secret for ann").await;
    send(stack, &carol_token, bob, "carol to bob").await;

    // Ann sees her own conversation, received.
    let own = friend_list_showing(stack, ann, &ann_token, bob, "a secret for ann").await;
    assert_eq!(own["msgType"], 0, "ann received the latest message");

    // Dave, a stranger, sees who Ann's friends are and no message.
    let stranger = friend_list_showing(stack, ann, &dave_token, bob, "").await;
    assert_eq!(stranger["msgType"], 0);

    // Carol, in Ann's list, sees Bob with her own latest message with him, from her side.
    let carol_sees = friend_list_showing(stack, ann, &carol_token, bob, "carol to bob").await;
    assert_eq!(carol_sees["msgType"], 1, "carol sent the latest message");

    // Bob, in Ann's list... is not there: Ann's friends are Bob only. In Carol's list he is,
    // with what he and Carol said, from his side.
    let bob_sees = friend_list_showing(stack, carol, &bob_token, bob, "").await;
    assert_eq!(bob_sees["msgType"], 0, "nobody writes to themselves");
    let in_own_list = friend_list_showing(stack, bob, &bob_token, carol, "carol to bob").await;
    assert_eq!(in_own_list["msgType"], 0, "bob received carol's message");

    // Nothing of Ann and Bob's conversation reaches anyone else, anywhere in the lists.
    for (user, token) in [(ann, &dave_token), (ann, &carol_token), (bob, &dave_token)] {
        let user = user.to_string();
        for path in [
            "/douyin/relation/friend/list/",
            "/douyin/relation/follow/list/",
            "/douyin/relation/follower/list/",
        ] {
            let reply = stack
                .query(path, &[("user_id", &user), ("token", token)])
                .await;
            assert_eq!(reply["status_code"], 0, "{reply}");
            assert!(
                !reply.to_string().contains("a secret for ann"),
                "{path} of {user} showed someone else's message: {reply}"
            );
        }
    }
}
