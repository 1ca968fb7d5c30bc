//! Publishing, media and the feed, through HTTP and the real services.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use futures::StreamExt;
use infra::settings::MediaBackend;
use serde_json::Value;
use system_tests::{sample_video, TestStack, PUBLIC_BASE_URL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_video_is_listed_with_its_cover_and_streams_by_ranges() {
    let stack = TestStack::spawn().await;
    publishes_and_streams_by_ranges(&stack).await;
}

/// `MEDIA_STORE=s3`: the same, against an S3 server (s3s-fs) over HTTP, with credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_s3_store_a_published_video_streams_by_ranges_as_well() {
    let s3 = crate::s3::S3Server::start("douyin-media").await;
    let stack = TestStack::spawn_with(|settings| {
        settings.media.media_store = MediaBackend::S3;
        settings.media.media_bucket = Some("douyin-media".into());
        settings.media.s3_connection = Some(s3.connection());
    })
    .await;
    publishes_and_streams_by_ranges(&stack).await;
    // The video and its cover went to the S3 server, not to a folder of the stack's.
    let stored = s3.objects("douyin-media");
    assert!(
        stored.iter().any(|key| key.starts_with("videos/")),
        "{stored:?}"
    );
    assert!(
        stored.iter().any(|key| key.starts_with("covers/")),
        "{stored:?}"
    );
    assert!(stack.stored_objects().is_empty());
    // Wrong credentials are refused by the server: the store is really checked.
    let mut wrong = s3.connection();
    wrong.secret_access_key = infra::settings::secret("not-the-secret");
    let media = http_api::media::MediaStore::connect(&infra::settings::MediaSettings {
        s3_connection: Some(wrong),
        ..stack.settings.media.clone()
    })
    .unwrap();
    assert!(media.size(&stored[0]).await.is_err());
}

async fn publishes_and_streams_by_ranges(stack: &TestStack) {
    let (ann, token) = stack.registered("ann", "password1").await;

    let video = stack.published(ann, &token, "cats").await;
    assert_eq!(video["author"]["id"], ann);
    assert_eq!(video["author"]["name"], "ann");
    assert_eq!(video["author"]["work_count"], 1);
    assert_eq!(video["favorite_count"], 0);
    assert_eq!(video["comment_count"], 0);
    assert_eq!(video["is_favorite"], false);
    let play_url = video["play_url"].as_str().unwrap();
    let cover_url = video["cover_url"].as_str().unwrap();
    assert!(
        play_url.starts_with(&format!("{PUBLIC_BASE_URL}/media/videos/"))
            && play_url.ends_with(".mp4"),
        "{play_url}"
    );
    assert!(
        cover_url.starts_with(&format!("{PUBLIC_BASE_URL}/media/covers/")),
        "{cover_url}"
    );

    let sample = sample_video();
    let whole = stack.fetch(play_url, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    assert_eq!(whole.bytes().await.unwrap(), sample);

    let first = stack.fetch(play_url, Some("bytes=0-99")).await;
    assert_eq!(first.status(), 206);
    assert_eq!(
        first.headers()["content-range"],
        format!("bytes 0-99/{}", sample.len()).as_str()
    );
    assert_eq!(first.bytes().await.unwrap(), sample[..100]);

    let tail = stack.fetch(play_url, Some("bytes=-10")).await;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), sample[sample.len() - 10..]);

    let beyond = stack.fetch(play_url, Some("bytes=99999999-")).await;
    assert_eq!(beyond.status(), 416);

    let cover = stack.fetch(cover_url, None).await;
    assert_eq!(cover.status(), 200);
    assert_eq!(cover.headers()["content-type"], "image/jpeg");
    assert_eq!(
        cover.bytes().await.unwrap()[..3],
        [0xFF, 0xD8, 0xFF],
        "a JPEG"
    );

    let missing = stack
        .fetch(&format!("{PUBLIC_BASE_URL}/media/videos/424242.mp4"), None)
        .await;
    assert_eq!(missing.status(), 404);
    let envelope: Value = missing.json().await.unwrap();
    assert_eq!(envelope["status_code"], 404);

    let feed = stack.query("/douyin/feed/", &[]).await;
    assert_eq!(feed["status_code"], 0, "{feed}");
    assert_eq!(feed["video_list"][0]["id"], video["id"]);
    assert_eq!(feed["video_list"][0]["is_favorite"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_leave_no_object_and_no_event_behind() {
    let stack = TestStack::spawn_with(|settings| settings.media.max_upload_bytes = 64 * 1024).await;
    let (_, token) = stack.registered("ann", "password1").await;
    let events_before = stack.count_events().await;

    let mut too_large = sample_video();
    too_large.resize(200 * 1024, 0);
    let long_title = "long ".repeat(30);
    let png = include_bytes!("../../../query-api/assets/avatar.png").to_vec();
    // token, title, file, and the `status_code` and `status_msg` expected back.
    type Upload<'a> = (&'a str, &'a str, Option<Vec<u8>>, i64, &'a str);
    let cases: Vec<Upload> = vec![
        (&token, "big", Some(too_large), 413, "larger than"),
        (&token, "picture", Some(png), 400, "not a video"),
        (
            &token,
            "text",
            Some(b"just some text".to_vec()),
            400,
            "not a video",
        ),
        (
            &token,
            "",
            Some(sample_video()),
            400,
            "`title` must not be empty",
        ),
        (
            &token,
            &long_title,
            Some(sample_video()),
            400,
            "`title` must be at most 100",
        ),
        (&token, "no file", None, 400, "`data` is required"),
        ("not-a-token", "bad token", Some(sample_video()), 401, ""),
        (
            "",
            "no token",
            Some(sample_video()),
            401,
            "`token` is required",
        ),
    ];
    for (token, title, data, code, message) in cases {
        let mut form = reqwest::multipart::Form::new()
            .text("token", token.to_owned())
            .text("title", title.to_owned());
        if let Some(data) = data {
            form = form.part(
                "data",
                reqwest::multipart::Part::bytes(data).file_name("cat.mp4"),
            );
        }
        let reply: Value = stack
            .http
            .post(format!("{}/douyin/publish/action/", stack.command_url))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reply["status_code"], code, "{title}: {reply}");
        assert!(
            reply["status_msg"].as_str().unwrap().contains(message),
            "{title}: {reply}"
        );
    }
    assert_eq!(stack.count_events().await, events_before);
    assert!(
        stack.stored_objects().is_empty(),
        "{:?}",
        stack.stored_objects()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_no_cover_can_be_taken_from_gets_the_default_cover() {
    let stack = TestStack::spawn().await;
    let (ann, token) = stack.registered("ann", "password1").await;
    // An MP4 signature followed by bytes no decoder makes sense of.
    let mut broken = sample_video()[..32].to_vec();
    broken.extend(std::iter::repeat_n(0x5a, 4096));
    let reply = stack.publish(&token, "broken", broken).await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    let list = stack
        .eventually(
            "/douyin/publish/list/",
            &[("user_id", &ann.to_string()), ("token", &token)],
            |reply| {
                reply["video_list"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty())
            },
        )
        .await;
    let cover_url = list["video_list"][0]["cover_url"].as_str().unwrap();
    assert_eq!(cover_url, format!("{PUBLIC_BASE_URL}/static/cover.jpg"));
    let cover = stack.fetch(cover_url, None).await;
    assert_eq!(cover.status(), 200);
    assert_eq!(cover.headers()["content-type"], "image/jpeg");
}

/// A stand-in for ffmpeg: a shell script running `body`, in a folder of its own (`${0%/*}`
/// in the script) where it can leave what it saw.
/// A stand-in for ffmpeg running `body` (bash), in a folder of its own where it may write its
/// notes: ffmpeg runs as another user where the service runs as root (see `sandbox.rs`).
fn stand_in_ffmpeg(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = dir.path().join("ffmpeg");
    std::fs::write(&script, format!("#!/bin/bash\n{body}\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, script)
}

/// ffmpeg decodes what anyone uploads, so it is taken to be a program an attacker controls:
/// here, one that tries to read its parent's environment (the service's secrets) and to open
/// a socket, and writes down what it got. It gets neither (the socket only where a network
/// namespace can be made: as root, always).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_cannot_read_the_services_secrets_nor_reach_the_network() {
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = target.local_addr().unwrap().port();
    // The command API runs in this process.
    let service = std::process::id();
    let (dir, ffmpeg) = stand_in_ffmpeg(&format!(
        r#"{{
  if /bin/cat /proc/{service}/environ >/dev/null 2>&1; then echo 'environ: read'; else echo 'environ: refused'; fi
  if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo 'network: open'; else echo 'network: refused'; fi
  echo "uid: $(/usr/bin/id -u)"
}} > "${{0%/*}}/report"
exit 1"#
    ));
    let stack = TestStack::spawn_with(|settings| settings.media.ffmpeg = ffmpeg).await;
    let (ann, token) = stack.registered("ann", "password1").await;

    let reply = stack.publish(&token, "crafted", sample_video()).await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    assert_default_cover(&stack, ann, &token).await;
    let seen = std::fs::read_to_string(dir.path().join("report")).expect("the stand-in ran");
    assert!(seen.contains("environ: refused"), "{seen}");
    let sandbox = command_api::sandbox::Sandbox::probe().await.unwrap();
    if sandbox.has_no_network() {
        assert!(seen.contains("network: refused"), "{sandbox:?}: {seen}");
    }
    if matches!(sandbox, command_api::sandbox::Sandbox::OtherUser { .. }) {
        assert!(!seen.contains("uid: 0"), "ffmpeg ran as root: {seen}");
    }
}

/// The default cover, once the only video of `author` is listed.
async fn assert_default_cover(stack: &TestStack, author: i64, token: &str) {
    let list = stack
        .eventually(
            "/douyin/publish/list/",
            &[("user_id", &author.to_string()), ("token", token)],
            |reply| {
                reply["video_list"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty())
            },
        )
        .await;
    assert_eq!(
        list["video_list"][0]["cover_url"],
        format!("{PUBLIC_BASE_URL}/static/cover.jpg")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_gets_no_environment_and_reads_only_the_upload_as_its_container() {
    // Secrets a command API's environment holds: those missing are made up (REDIS_URL as the
    // tests' default, which they read), those set are left as they are.
    for (name, value) in [
        ("JWT_SECRET", "a-secret-ffmpeg-must-not-see-0123456789"),
        ("DATABASE_URL", "postgres://secret@127.0.0.1:1/none"),
        ("AWS_SECRET_ACCESS_KEY", "a-secret-ffmpeg-must-not-see"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
    ] {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    let (dir, ffmpeg) = stand_in_ffmpeg(
        r#"env > "${0%/*}/env.txt"
printf '%s\n' "$@" > "${0%/*}/args.txt"
exit 1"#,
    );
    let stack = TestStack::spawn_with(|settings| settings.media.ffmpeg = ffmpeg).await;
    let (ann, token) = stack.registered("ann", "password1").await;

    let reply = stack.publish(&token, "cats", sample_video()).await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    assert_default_cover(&stack, ann, &token).await;

    let env = std::fs::read_to_string(dir.path().join("env.txt")).expect("the stand-in ran");
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    for secret in ["JWT_SECRET", "DATABASE_URL", "AWS_", "REDIS_URL"] {
        assert!(
            !names.iter().any(|name| name.starts_with(secret)),
            "{secret} reached ffmpeg: {names:?}"
        );
    }
    // Nor anything else of the service's: only what the shell sets for itself.
    for name in &names {
        assert!(
            ["PWD", "OLDPWD", "SHLVL", "_"].contains(name),
            "{name} reached ffmpeg: {names:?}"
        );
    }

    let args = std::fs::read_to_string(dir.path().join("args.txt")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let input = args.iter().position(|arg| *arg == "-i").expect("an input");
    let before_input = &args[..input];
    let after = |option: &str| {
        let at = before_input.iter().position(|arg| *arg == option);
        at.map(|at| before_input[at + 1])
    };
    assert_eq!(after("-protocol_whitelist"), Some("file"), "{args:?}");
    assert_eq!(after("-f"), Some("mov"), "an MP4 is read as one: {args:?}");
    assert!(args[input + 1].starts_with("file:/"), "{args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_waits_too_long_for_ffmpeg_is_refused_as_busy() {
    // One cover at a time, and one that takes longer than a publish waits for its turn.
    let (dir, ffmpeg) = stand_in_ffmpeg(": > \"${0%/*}/started\"\nsleep 15\nexit 1");
    let stack = TestStack::spawn_with(|settings| {
        settings.media.ffmpeg = ffmpeg;
        settings.media.ffmpeg_max_concurrent = 1;
    })
    .await;
    let (ann, token) = stack.registered("ann", "password1").await;

    let (first, second) = tokio::join!(stack.publish(&token, "first", sample_video()), async {
        let started = dir.path().join("started");
        let waiting = std::time::Instant::now();
        while !started.exists() {
            assert!(
                waiting.elapsed() < std::time::Duration::from_secs(10),
                "the first publish never started ffmpeg"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let events = stack.count_events().await;
        let reply = stack.publish(&token, "second", sample_video()).await;
        (reply, events)
    });
    let (second, events_before) = second;
    assert_eq!(second["status_code"], 503, "{second}");
    assert_eq!(first["status_code"], 0, "{first}");
    assert_default_cover(&stack, ann, &token).await;
    // The refused publish left nothing: one more event (the first publish), one video file.
    assert_eq!(stack.count_events().await, events_before + 1);
    assert_eq!(
        stack.stored_objects().len(),
        1,
        "{:?}",
        stack.stored_objects()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_pages_by_time_without_repeating_or_skipping_a_video() {
    let stack = TestStack::spawn().await;
    let (ann, token) = stack.registered("ann", "password1").await;
    const VIDEOS: usize = 33;
    let replies: Vec<Value> = futures::stream::iter(0..VIDEOS)
        .map(|i| {
            let (stack, token) = (&stack, &token);
            async move {
                stack
                    .publish(token, &format!("video {i}"), sample_video())
                    .await
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    assert!(
        replies.iter().all(|reply| reply["status_code"] == 0),
        "{replies:?}"
    );
    stack
        .eventually(
            "/douyin/publish/list/",
            &[("user_id", &ann.to_string()), ("token", &token)],
            |reply| {
                reply["video_list"]
                    .as_array()
                    .is_some_and(|l| l.len() == VIDEOS)
            },
        )
        .await;

    let mut seen = Vec::new();
    let mut latest_time: Option<i64> = None;
    let mut pages = vec![];
    loop {
        let time = latest_time.map(|t| t.to_string());
        let mut params = vec![("token", token.as_str())];
        if let Some(time) = &time {
            params.push(("latest_time", time));
        }
        let page = stack.query("/douyin/feed/", &params).await;
        assert_eq!(page["status_code"], 0, "{page}");
        let videos = page["video_list"].as_array().unwrap();
        if videos.is_empty() {
            break;
        }
        assert!(videos.len() <= 30);
        pages.push(videos.len());
        seen.extend(videos.iter().map(|video| video["id"].as_i64().unwrap()));
        let next_time = page["next_time"].as_i64().unwrap();
        assert!(
            latest_time.is_none_or(|t| next_time < t),
            "the cursor moves back in time"
        );
        latest_time = Some(next_time);
    }
    assert_eq!(pages, vec![30, VIDEOS - 30]);
    let distinct: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), VIDEOS, "no video twice");

    // A `latest_time` in seconds is read as seconds: a minute from now shows everything.
    let in_a_minute = (chrono::Utc::now().timestamp() + 60).to_string();
    let page = stack
        .query("/douyin/feed/", &[("latest_time", &in_a_minute)])
        .await;
    assert_eq!(page["video_list"].as_array().unwrap().len(), 30);
    // A time before every video shows none.
    let page = stack
        .query("/douyin/feed/", &[("latest_time", "1000")])
        .await;
    assert_eq!(page["video_list"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_sweep_removes_only_old_objects_no_video_refers_to() {
    let stack = TestStack::spawn().await;
    let (ann, token) = stack.registered("ann", "password1").await;
    let video = stack.published(ann, &token, "cats").await;
    // What an upload leaves when its process dies after storing, before its command runs.
    let media = http_api::media::MediaStore::connect(&stack.settings.media).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), sample_video()).unwrap();
    media
        .put_file("videos/999999.mp4", file.path())
        .await
        .unwrap();
    let event_store = infra::event_store::EventStore::connect(&stack.settings.event_store)
        .await
        .unwrap();

    let within_grace =
        command_api::sweep::sweep_media(&event_store, &media, std::time::Duration::from_secs(3600))
            .await
            .unwrap();
    assert_eq!(
        within_grace,
        command_api::sweep::Swept {
            kept: 2,
            young: 1,
            removed: 0
        }
    );

    let swept = command_api::sweep::sweep_media(&event_store, &media, std::time::Duration::ZERO)
        .await
        .unwrap();

    assert_eq!(
        swept,
        command_api::sweep::Swept {
            kept: 2,
            young: 0,
            removed: 1
        }
    );
    assert_eq!(stack.stored_objects().len(), 2);
    for url in ["play_url", "cover_url"] {
        let reply = stack.fetch(video[url].as_str().unwrap(), None).await;
        assert_eq!(reply.status(), 200, "{url} still streams");
    }
}

/// A publish form with `fields` first, then the start of a video whose rest never comes, as
/// on a slow phone line.
fn stalled_publish(
    stack: &TestStack,
    fields: &[(&str, &str)],
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static {
    stalled_publish_from(stack, "127.0.0.1", fields)
}

/// [`stalled_publish`] from `address`, as nginx passes it on.
fn stalled_publish_from(
    stack: &TestStack,
    address: &str,
    fields: &[(&str, &str)],
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static {
    let boundary = "douyin-test-boundary";
    let mut head = String::new();
    for (name, value) in fields {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"clip.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    ));
    let body = futures::stream::iter([
        Ok::<_, std::io::Error>(head.into_bytes()),
        Ok(sample_video()[..1024].to_vec()),
    ])
    .chain(futures::stream::pending());
    stack
        .http
        .post(format!("{}/douyin/publish/action/", stack.command_url))
        .header("X-Real-IP", address)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
}

/// A file that starts before any token is anonymous until its end: such uploads may hold
/// at most half the slots, one per address, so that trickling ones cannot hold them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_uploads_hold_at_most_half_the_slots_and_the_rest_stay_free() {
    let stack = TestStack::spawn_with(|settings| settings.media.uploads_at_once = 2).await;
    let (author, token) = stack.registered("ann", "password").await;
    // A token-less upload trickling in holds the anonymous allowance.
    let holding = tokio::spawn(stalled_publish_from(&stack, "203.0.113.1", &[]));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    // Another, from elsewhere, is refused as soon as its file starts, not after it.
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stalled_publish_from(&stack, "203.0.113.2", &[]),
    )
    .await
    .expect("refused at once, while its file is still coming")
    .unwrap();
    let retry_after = refused.headers().get("retry-after").cloned();
    let reply: Value = refused.json().await.unwrap();
    assert_eq!(reply["status_code"], 503, "{reply}");
    assert!(retry_after.is_some(), "no Retry-After");

    // A publish whose token comes first takes the slot left.
    let published = stack.publish(&token, "cats", sample_video()).await;
    assert_eq!(published["status_code"], 0, "{published}");
    stack.published(author, &token, "cats").await;
    holding.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_sent_before_the_video_is_refused_before_the_upload() {
    let stack = TestStack::spawn().await;
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stalled_publish(&stack, &[("token", "not-a-token"), ("title", "cats")]),
    )
    .await
    .expect("the refusal comes while the upload is still under way")
    .unwrap();

    let reply: Value = reply.json().await.unwrap();
    assert_eq!(reply["status_code"], 401, "{reply}");
    assert!(stack.stored_objects().is_empty());
    assert_eq!(stack.count_events().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_number_at_once_are_busy_before_they_are_read() {
    let stack = TestStack::spawn_with(|settings| settings.media.uploads_at_once = 1).await;
    let (author, token) = stack.registered("ann", "password").await;
    // An anonymous upload whose rest never comes holds the only slot.
    let holding = tokio::spawn(stalled_publish(&stack, &[]));
    // Nothing outside shows the slot taken: time for the request's head to arrive, with room
    // for a loaded machine.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let busy = stack.publish(&token, "cats", sample_video()).await;
    assert_eq!(busy["status_code"], 503, "{busy}");
    assert_eq!(stack.count_events().await, 2, "only the sign-up's events");

    // The slot comes back with the connection.
    holding.abort();
    let mut published = busy;
    for _ in 0..50 {
        published = stack.publish(&token, "cats", sample_video()).await;
        if published["status_code"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(published["status_code"], 0, "{published}");
    stack.published(author, &token, "cats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_stalls_is_cut_off_and_frees_its_slot() {
    let stack = TestStack::spawn_with(|settings| settings.media.uploads_at_once = 1).await;
    let (_, token) = stack.registered("ann", "password").await;
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stalled_publish(&stack, &[("token", &token)]),
    )
    .await
    .expect("a silent upload is answered, not waited for")
    .unwrap();
    let reply: Value = reply.json().await.unwrap();
    assert_eq!(reply["status_code"], 408, "{reply}");

    // Its slot is free for the next one.
    let published = stack.publish(&token, "cats", sample_video()).await;
    assert_eq!(published["status_code"], 0, "{published}");
}
