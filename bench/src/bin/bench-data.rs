//! The data set `make bench` measures on, made once and kept: users, videos, likes, follows,
//! comments and messages, each decided by its aggregate's own command handler and stored
//! through postgres-es's event repository, so the outbox queues every event and the relay and
//! projector build the read models as they would for the API's writes. Nothing is written
//! into a read model directly.
//!
//! `bench-data make` makes the set unless the event store already holds one of the same
//! scale, then writes the fixtures (ids and fresh tokens) the load scripts use.
//! `bench-data wait` returns once the outbox is empty and the projector has consumed every
//! published event (`--published`: once the outbox is empty). `bench-data backlog` writes a
//! burst of likes into the kept set (`bench::backlog`) for the projector to catch up with.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::positions::Positions;
use clap::{Parser, Subcommand};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use domain::account::{Account, AccountCommand, Password};
use domain::comment::{Comment, CommentCommand};
use domain::conversation::{Conversation, ConversationCommand};
use domain::follow::{Follow, FollowCommand};
use domain::like::{Like, LikeCommand};
use domain::text::{CommentText, MessageText, Title};
use domain::user::{User, UserCommand, UserName};
use domain::video::{Media, Video, VideoCommand};
use domain::{MessageId, UserId, VideoId};
use http_api::auth::{PasswordChecks, Tokens};
use http_api::media::MediaStore;
use infra::event_store::EventStore;
use infra::settings::{from_env, AuthSettings, EventStoreSettings, KafkaSettings, MediaSettings};
use postgres_es::PostgresEventRepository;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(
    about = "The data set `make bench` measures on (settings from the environment, as the services read them)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Makes the data set unless the event store holds one of this scale; writes the fixtures.
    Make(MakeArgs),
    /// Waits until the outbox is empty and the projector group has consumed every event.
    Wait {
        /// The projector's consumer group.
        #[arg(long, env = "PROJECTOR_GROUP")]
        group: String,
        /// Gives up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Only until the outbox is empty (every event published), whatever the projector did.
        #[arg(long)]
        published: bool,
    },
    /// Writes this many like events into the kept data set, leaving its read models as they
    /// were once projected (each pair toggled twice).
    Backlog {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
}

#[derive(Parser, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Scale {
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 100_000)]
    videos: usize,
    #[arg(long, default_value_t = 1_000_000)]
    likes: usize,
    #[arg(long, default_value_t = 100_000)]
    follows: usize,
    #[arg(long, default_value_t = 100_000)]
    comments: usize,
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Users each holding lists of `list_len` items: published, liked, following, followers,
    /// friends, comments on one of their videos, and messages with one other user.
    #[arg(long, default_value_t = 4)]
    heavy_users: usize,
    #[arg(long, default_value_t = 1_000)]
    list_len: usize,
}

#[derive(Parser)]
struct MakeArgs {
    #[command(flatten)]
    scale: Scale,
    /// A real video every video of the set shares (stored under a few keys), and its cover.
    #[arg(long)]
    video: PathBuf,
    #[arg(long)]
    cover: PathBuf,
    /// Where to write the fixtures: ids and tokens for the load scripts.
    #[arg(long)]
    fixtures: PathBuf,
    /// Ordinary users given a token in the fixtures (writers of the write loads).
    #[arg(long, default_value_t = 256)]
    writers: usize,
}

/// Where the set's notable things are: kept in the event store beside the set.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Layout {
    users: Vec<i64>,
    first_video: i64,
    last_video: i64,
    /// Publish times (epoch ms) of the first and last video: one apart each.
    first_published_at: i64,
    last_published_at: i64,
    heavy: Vec<Heavy>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Heavy {
    id: i64,
    /// One of the user's videos, with `list_len` comments.
    commented_video: i64,
    /// The user `list_len` messages were exchanged with.
    chat_with: i64,
}

#[derive(Serialize)]
struct Fixtures<'a> {
    password: &'a str,
    first_video: i64,
    last_video: i64,
    first_published_at: i64,
    last_published_at: i64,
    heavy: Vec<HeavyFixture<'a>>,
    writers: Vec<Writer>,
}

#[derive(Serialize)]
struct HeavyFixture<'a> {
    #[serde(flatten)]
    user: &'a Heavy,
    name: String,
    token: String,
}

#[derive(Serialize)]
struct Writer {
    id: i64,
    name: String,
    token: String,
}

const PASSWORD: &str = "bench-password";
const SAMPLE_KEYS: usize = 4;
/// Events stored per transaction, and transactions at once.
const CHUNK: usize = 2_000;
const CHUNKS_AT_ONCE: usize = 4;

fn name(index: usize) -> String {
    format!("bench{index}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Make(args) => make(args).await,
        Command::Wait {
            group,
            timeout,
            published,
        } => wait(&group, Duration::from_secs(timeout), published).await,
        Command::Backlog { events } => backlog(events).await,
    }
}

async fn backlog(events: usize) -> anyhow::Result<()> {
    let store = EventStore::connect(&from_env::<EventStoreSettings>()?).await?;
    let layout: serde_json::Value = sqlx::query_scalar("SELECT layout FROM bench_data_set")
        .fetch_optional(store.pool())
        .await?
        .context("no data set: run `bench-data make` first")?;
    let layout: Layout = serde_json::from_value(layout)?;
    let backlog = bench::backlog::Backlog::new(store.pool().clone(), layout.users).await?;
    let (written, rate) = backlog.write(events).await?;
    println!("wrote {written} like events ({rate:.0} events/s)");
    Ok(())
}

async fn make(args: MakeArgs) -> anyhow::Result<()> {
    let store = EventStore::connect(&from_env::<EventStoreSettings>()?).await?;
    let pool = store.pool().clone();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_data_set (
             only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
             scale jsonb NOT NULL, layout jsonb NOT NULL, made_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    let kept: Option<(serde_json::Value, serde_json::Value)> =
        sqlx::query_as("SELECT scale, layout FROM bench_data_set")
            .fetch_optional(&pool)
            .await?;
    let layout = match kept {
        Some((scale, layout)) => {
            let scale: Scale = serde_json::from_value(scale)?;
            if scale != args.scale {
                bail!(
                    "the event store holds a data set of another scale ({scale:?}): drop the bench databases to make a new one"
                );
            }
            println!("the data set is kept from an earlier run: {scale:?}");
            serde_json::from_value(layout)?
        }
        None => {
            let started = Instant::now();
            let events_before = count_events(&pool).await?;
            if events_before > 0 {
                bail!("the event store holds {events_before} events of something else: drop the bench databases first");
            }
            let layout = Maker::new(&store, &args).await?.make().await?;
            sqlx::query("INSERT INTO bench_data_set (scale, layout) VALUES ($1, $2)")
                .bind(serde_json::to_value(&args.scale)?)
                .bind(serde_json::to_value(&layout)?)
                .execute(&pool)
                .await?;
            let events = count_events(&pool).await?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "made {events} events in {seconds:.0} s ({:.0} events/s)",
                events as f64 / seconds
            );
            layout
        }
    };
    write_fixtures(&args, &layout)
}

async fn count_events(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?)
}

fn write_fixtures(args: &MakeArgs, layout: &Layout) -> anyhow::Result<()> {
    let tokens = Tokens::new(&from_env::<AuthSettings>()?)
        .map_err(|error| anyhow::anyhow!("JWT_SECRET: {error}"))?;
    let index_of: HashMap<i64, usize> = layout
        .users
        .iter()
        .enumerate()
        .map(|(index, id)| (*id, index))
        .collect();
    let user = |id: i64| UserId::try_from(id).expect("ids in the layout are valid");
    let heavy = layout
        .heavy
        .iter()
        .map(|heavy| HeavyFixture {
            user: heavy,
            name: name(index_of[&heavy.id]),
            token: tokens.issue(user(heavy.id)),
        })
        .collect();
    // Writers: ordinary users from the end of the list, so they are none of the heavy ones.
    let writers = layout
        .users
        .iter()
        .enumerate()
        .rev()
        .take(args.writers)
        .map(|(index, id)| Writer {
            id: *id,
            name: name(index),
            token: tokens.issue(user(*id)),
        })
        .collect();
    let fixtures = Fixtures {
        password: PASSWORD,
        first_video: layout.first_video,
        last_video: layout.last_video,
        first_published_at: layout.first_published_at,
        last_published_at: layout.last_published_at,
        heavy,
        writers,
    };
    std::fs::write(&args.fixtures, serde_json::to_vec_pretty(&fixtures)?)
        .with_context(|| format!("writing {}", args.fixtures.display()))?;
    Ok(())
}

/// Makes the set: decides every command on its aggregate, stores the events in chunks.
struct Maker {
    pool: PgPool,
    scale: Scale,
    rng: StdRng,
    chunks: JoinSet<anyhow::Result<usize>>,
    stored: usize,
    started: Instant,
    sample_keys: Vec<String>,
    cover_keys: Vec<String>,
}

impl Maker {
    async fn new(store: &EventStore, args: &MakeArgs) -> anyhow::Result<Self> {
        let media = MediaStore::connect(&from_env::<MediaSettings>()?)?;
        // Stored under the keys the first videos of the set would have had (the query API
        // serves only keys of the server's own shape); every video shares one of them.
        let next_video: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM video_ids",
        )
        .fetch_one(store.pool())
        .await?;
        let mut sample_keys = vec![];
        let mut cover_keys = vec![];
        for i in 0..SAMPLE_KEYS as i64 {
            let video = format!("videos/{}.mp4", next_video + i);
            let cover = format!("covers/{}.jpg", next_video + i);
            media.put_file(&video, &args.video).await?;
            media.put_file(&cover, &args.cover).await?;
            sample_keys.push(video);
            cover_keys.push(cover);
        }
        Ok(Self {
            pool: store.pool().clone(),
            scale: args.scale.clone(),
            rng: StdRng::seed_from_u64(20261201),
            chunks: JoinSet::new(),
            stored: 0,
            started: Instant::now(),
            sample_keys,
            cover_keys,
        })
    }

    async fn ids(&self, sequence: &str, count: usize) -> anyhow::Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT nextval($1::regclass) FROM generate_series(1, $2) ORDER BY 1",
        )
        .bind(sequence)
        .bind(count as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn make(mut self) -> anyhow::Result<Layout> {
        let scale = self.scale.clone();
        anyhow::ensure!(
            scale.users > scale.heavy_users * 2 + scale.list_len,
            "too few users for the heavy users' lists"
        );
        let users = self.users().await?;
        let heavy_ids = &users[..scale.heavy_users];
        let first_published_at = chrono::Utc::now().timestamp_millis() - scale.videos as i64;
        let (videos, commented) = self.videos(&users, heavy_ids, first_published_at).await?;
        self.likes(&users, heavy_ids, &videos).await?;
        self.follows(&users, heavy_ids).await?;
        self.comments(&users, &videos, &commented).await?;
        let chats = self.messages(&users, heavy_ids).await?;
        self.finish().await?;
        let heavy = heavy_ids
            .iter()
            .zip(commented)
            .zip(chats)
            .map(|((id, (video, _)), chat_with)| Heavy {
                id: *id,
                commented_video: video,
                chat_with,
            })
            .collect();
        Ok(Layout {
            users: users.clone(),
            first_video: videos.first().map_or(0, |video| video.0),
            last_video: videos.last().map_or(0, |video| video.0),
            first_published_at,
            last_published_at: first_published_at + videos.len() as i64 - 1,
            heavy,
        })
    }

    async fn users(&mut self) -> anyhow::Result<Vec<i64>> {
        let hash = PasswordChecks::new(&Default::default())?
            .hash(Password::parse(PASSWORD)?)
            .await?;
        let ids = self.ids("user_ids", self.scale.users).await?;
        let mut accounts = Batch::<Account>::default();
        let mut profiles = Batch::<User>::default();
        for (index, id) in ids.iter().enumerate() {
            let user_id = UserId::try_from(*id)?;
            let name = UserName::parse(&name(index))?;
            let command = AccountCommand::Open {
                user_id,
                password_hash: hash.clone(),
            };
            accounts.decide(name.as_str(), command).await;
            profiles
                .decide(&id.to_string(), UserCommand::Register { name })
                .await;
            self.flush(&mut accounts, false).await?;
            self.flush(&mut profiles, false).await?;
        }
        self.flush(&mut accounts, true).await?;
        self.flush(&mut profiles, true).await?;
        Ok(ids)
    }

    /// Every video as (id, author); and per heavy user, its commented video and its author.
    #[allow(clippy::type_complexity)]
    async fn videos(
        &mut self,
        users: &[i64],
        heavy: &[i64],
        first_time: i64,
    ) -> anyhow::Result<(Vec<(i64, i64)>, Vec<(i64, i64)>)> {
        let count = self.scale.videos.max(heavy.len() * self.scale.list_len);
        let ids = self.ids("video_ids", count).await?;
        // Unique publish times, one millisecond apart, from `first_time`; the publish clock
        // is moved past them for later publishes.
        let mut batch = Batch::<Video>::default();
        let mut videos = Vec::with_capacity(count);
        // The heavy users' videos are spread evenly over the whole timeline.
        let theirs = heavy.len() * self.scale.list_len;
        let stride = (count / theirs.max(1)).max(1);
        for (index, id) in ids.iter().enumerate() {
            let slot = index / stride;
            let author = if index % stride == 0 && slot < theirs {
                heavy[slot % heavy.len()]
            } else {
                users[self.rng.random_range(heavy.len()..users.len())]
            };
            let sample = index % SAMPLE_KEYS;
            let command = VideoCommand::Publish {
                author: UserId::try_from(author)?,
                title: Title::parse(&format!("bench video {index}"))?,
                media: Media {
                    video_key: self.sample_keys[sample].clone(),
                    cover_key: Some(self.cover_keys[sample].clone()),
                },
                published_at: first_time + index as i64,
            };
            batch.decide(&id.to_string(), command).await;
            self.flush(&mut batch, false).await?;
            videos.push((*id, author));
        }
        self.flush(&mut batch, true).await?;
        sqlx::query("UPDATE publish_clock SET last_publish = GREATEST(last_publish, $1)")
            .bind(first_time + count as i64)
            .execute(&self.pool)
            .await?;
        let commented = heavy
            .iter()
            .map(|user| {
                *videos
                    .iter()
                    .rev()
                    .find(|(_, author)| author == user)
                    .expect("every heavy user publishes")
            })
            .collect();
        Ok((videos, commented))
    }

    async fn likes(
        &mut self,
        users: &[i64],
        heavy: &[i64],
        videos: &[(i64, i64)],
    ) -> anyhow::Result<()> {
        let mut seen = HashSet::with_capacity(self.scale.likes);
        let mut batch = Batch::<Like>::default();
        let at = chrono::Utc::now().timestamp_millis();
        let mut pairs = vec![];
        for user in heavy {
            let mut liked = 0;
            while liked < self.scale.list_len {
                let video = videos[self.rng.random_range(0..videos.len())];
                if seen.insert((*user, video.0)) {
                    pairs.push((*user, video));
                    liked += 1;
                }
            }
        }
        while pairs.len() < self.scale.likes {
            let user = users[self.rng.random_range(heavy.len()..users.len())];
            let video = videos[self.rng.random_range(0..videos.len())];
            if seen.insert((user, video.0)) {
                pairs.push((user, video));
            }
        }
        drop(seen);
        for (index, (user, (video, author))) in pairs.into_iter().enumerate() {
            let (video_id, user_id) = (VideoId::try_from(video)?, UserId::try_from(user)?);
            let command = LikeCommand::Like {
                video_id,
                user_id,
                video_author_id: UserId::try_from(author)?,
                at: at + index as i64,
            };
            batch.decide(&Like::id(video_id, user_id), command).await;
            self.flush(&mut batch, false).await?;
        }
        self.flush(&mut batch, true).await
    }

    async fn follows(&mut self, users: &[i64], heavy: &[i64]) -> anyhow::Result<()> {
        let mut seen = HashSet::new();
        let mut pairs = vec![];
        for user in heavy {
            let mut followed = 0;
            while followed < self.scale.list_len {
                let other = users[self.rng.random_range(heavy.len()..users.len())];
                if seen.insert((*user, other)) && seen.insert((other, *user)) {
                    // Both ways: friends, followers and following all get one more.
                    pairs.push((*user, other));
                    pairs.push((other, *user));
                    followed += 1;
                }
            }
        }
        while pairs.len() < self.scale.follows {
            let follower = users[self.rng.random_range(heavy.len()..users.len())];
            let followee = users[self.rng.random_range(0..users.len())];
            if follower != followee && seen.insert((follower, followee)) {
                pairs.push((follower, followee));
            }
        }
        let at = chrono::Utc::now().timestamp_millis();
        let mut batch = Batch::<Follow>::default();
        for (index, (follower, followee)) in pairs.into_iter().enumerate() {
            let (follower, followee) = (UserId::try_from(follower)?, UserId::try_from(followee)?);
            let command = FollowCommand::Follow {
                follower,
                followee,
                at: at + index as i64,
            };
            batch.decide(&Follow::id(follower, followee), command).await;
            self.flush(&mut batch, false).await?;
        }
        self.flush(&mut batch, true).await
    }

    async fn comments(
        &mut self,
        users: &[i64],
        videos: &[(i64, i64)],
        commented: &[(i64, i64)],
    ) -> anyhow::Result<()> {
        let count = self
            .scale
            .comments
            .max(commented.len() * self.scale.list_len);
        let ids = self.ids("comment_ids", count).await?;
        let at = chrono::Utc::now().timestamp_millis();
        let mut batch = Batch::<Comment>::default();
        for (index, id) in ids.iter().enumerate() {
            let (video, author) = match commented.get(index / self.scale.list_len) {
                Some(video) => *video,
                None => videos[self.rng.random_range(0..videos.len())],
            };
            let user = users[self.rng.random_range(0..users.len())];
            let command = CommentCommand::Post {
                video_id: VideoId::try_from(video)?,
                video_author_id: UserId::try_from(author)?,
                user_id: UserId::try_from(user)?,
                text: CommentText::parse(&format!("bench comment {index}: nice video"))?,
                at: at + index as i64,
            };
            batch.decide(&id.to_string(), command).await;
            self.flush(&mut batch, false).await?;
        }
        self.flush(&mut batch, true).await
    }

    /// Returns, per heavy user, the user it chats with.
    async fn messages(&mut self, users: &[i64], heavy: &[i64]) -> anyhow::Result<Vec<i64>> {
        let count = self.scale.messages.max(heavy.len() * self.scale.list_len);
        let ids = self.ids("message_ids", count).await?;
        let chats: Vec<i64> = (0..heavy.len()).map(|i| users[heavy.len() + i]).collect();
        let at = chrono::Utc::now().timestamp_millis() - count as i64;
        // Conversations grow by one event a message: each is decided on its state so far.
        let mut conversations: HashMap<String, (Conversation, usize)> = HashMap::new();
        let mut batch = Batch::<Conversation> {
            in_order: true,
            ..Default::default()
        };
        for (index, id) in ids.iter().enumerate() {
            let (from, to) = match heavy.get(index / self.scale.list_len) {
                Some(user) if index % 2 == 0 => (*user, chats[index / self.scale.list_len]),
                Some(user) => (chats[index / self.scale.list_len], *user),
                None => loop {
                    let from = users[self.rng.random_range(0..users.len())];
                    let to = users[self.rng.random_range(0..users.len())];
                    if from != to {
                        break (from, to);
                    }
                },
            };
            let (from, to) = (UserId::try_from(from)?, UserId::try_from(to)?);
            let command = ConversationCommand::Send {
                message_id: MessageId::try_from(*id)?,
                from,
                to,
                content: MessageText::parse(&format!("bench message {index}"))?,
                now: at + index as i64,
            };
            let aggregate_id = Conversation::id(from, to);
            let (state, sequence) = conversations.entry(aggregate_id.clone()).or_default();
            *sequence = batch
                .decide_on(state, *sequence, &aggregate_id, command)
                .await;
            self.flush(&mut batch, false).await?;
        }
        self.flush(&mut batch, true).await?;
        Ok(chats)
    }

    /// Stores the batch's events once it holds a chunk (or whatever it holds, at the end).
    async fn flush<A: Aggregate + 'static>(
        &mut self,
        batch: &mut Batch<A>,
        all: bool,
    ) -> anyhow::Result<()> {
        // A full chunk is stored; at the end (`all`), so is what is left.
        let store = batch.events.len() >= CHUNK || (all && !batch.events.is_empty());
        if !store {
            return if all { self.finish().await } else { Ok(()) };
        }
        if batch.in_order {
            self.finish().await?;
        }
        while self.chunks.len() >= CHUNKS_AT_ONCE {
            self.join_one().await?;
        }
        let events = std::mem::take(&mut batch.events);
        let repository = PostgresEventRepository::new(self.pool.clone());
        self.chunks.spawn(async move {
            repository.persist::<A>(&events, None).await?;
            Ok(events.len())
        });
        if all {
            self.finish().await?;
        }
        Ok(())
    }

    async fn join_one(&mut self) -> anyhow::Result<()> {
        if let Some(stored) = self.chunks.join_next().await {
            let before = self.stored;
            self.stored += stored??;
            if before / 100_000 != self.stored / 100_000 {
                println!(
                    "  {} events stored ({:.0} events/s)",
                    self.stored,
                    self.stored as f64 / self.started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        while !self.chunks.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }
}

/// Events decided and not yet stored, of one aggregate type.
struct Batch<A: Aggregate> {
    events: Vec<SerializedEvent>,
    /// Whether an aggregate's events may span chunks (a conversation's): such chunks are
    /// stored one after another, as commands would, so that an aggregate's event n+1 is
    /// never committed before n (the outbox publishes in commit order).
    in_order: bool,
    _aggregate: std::marker::PhantomData<A>,
}

impl<A: Aggregate> Default for Batch<A> {
    fn default() -> Self {
        Self {
            events: Vec::with_capacity(CHUNK),
            in_order: false,
            _aggregate: std::marker::PhantomData,
        }
    }
}

impl<A: Aggregate<Services = ()>> Batch<A> {
    /// Decides `command` on a new aggregate.
    async fn decide(&mut self, aggregate_id: &str, command: A::Command) {
        let mut aggregate = A::default();
        self.decide_on(&mut aggregate, 0, aggregate_id, command)
            .await;
    }

    /// Decides `command` on `aggregate`, whose last event is `sequence`; returns the new last.
    async fn decide_on(
        &mut self,
        aggregate: &mut A,
        sequence: usize,
        aggregate_id: &str,
        command: A::Command,
    ) -> usize {
        let sink = EventSink::default();
        if let Err(error) = aggregate.handle(command, &(), &sink).await {
            panic!("the data set's commands are all accepted: {error}");
        }
        let mut sequence = sequence;
        for payload in sink.collect().await {
            sequence += 1;
            let envelope = EventEnvelope::<A> {
                aggregate_id: aggregate_id.to_owned(),
                sequence,
                payload,
                metadata: HashMap::new(),
            };
            self.events
                .push(SerializedEvent::try_from(&envelope).expect("events serialise"));
        }
        sequence
    }
}

/// Waits for the outbox to empty and (unless `published` only) the projector's group to reach
/// every partition's end.
async fn wait(group: &str, timeout: Duration, published: bool) -> anyhow::Result<()> {
    let store = EventStore::connect(&from_env::<EventStoreSettings>()?).await?;
    let positions = Positions::new(&from_env::<KafkaSettings>()?, group)?;
    let started = Instant::now();
    let mut last_report = Instant::now() - Duration::from_secs(60);
    loop {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(store.pool())
            .await?;
        let behind = if published { 0 } else { positions.behind()? };
        if queued == 0 && behind == 0 {
            println!(
                "{} in {:.0} s",
                if published {
                    "every event published"
                } else {
                    "read models caught up"
                },
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("still {queued} events in the outbox and {behind} unconsumed after {timeout:?}");
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            println!("  waiting: {queued} events in the outbox, {behind} not yet projected");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
