//! A backlog for the projector: likes of the bench data set's users on its videos, each pair
//! toggled twice (liked then unliked, or the other way round if it was liked), decided by the
//! like aggregate and stored through postgres-es's repository into the event store, whose
//! outbox queues them for the relay as it would the API's. The read models end as they
//! began, so the data set stays the same however often a backlog is written.

use std::collections::HashMap;
use std::time::Instant;

use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use domain::like::{Like, LikeCommand};
use domain::{UserId, VideoId};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tokio::task::JoinSet;

/// Pairs toggled per transaction (two events each), and transactions at once: what the data
/// set's maker found fastest.
const PAIRS_PER_CHUNK: usize = 1_000;
const CHUNKS_AT_ONCE: usize = 4;

/// The data set the backlog is made in: its users, and its videos with their authors.
pub struct Backlog {
    pool: PgPool,
    users: Vec<i64>,
    videos: Vec<(i64, i64)>,
}

impl Backlog {
    /// Reads the data set's videos and their authors from the event store.
    pub async fn new(pool: PgPool, users: Vec<i64>) -> anyhow::Result<Self> {
        let videos: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT aggregate_id::bigint, (payload->'VideoPublished'->>'author_id')::bigint
               FROM events WHERE aggregate_type = 'video' AND event_type = 'VideoPublished'
              ORDER BY 1",
        )
        .fetch_all(&pool)
        .await?;
        anyhow::ensure!(
            !users.is_empty() && !videos.is_empty(),
            "no data set to write a backlog in"
        );
        Ok(Self {
            pool,
            users,
            videos,
        })
    }

    /// The `index`th pair: every user in turn, each on videos spread over the whole set, no
    /// pair twice as long as `index` < users × videos.
    fn pair(&self, index: usize) -> (i64, (i64, i64)) {
        let (users, videos) = (self.users.len(), self.videos.len());
        let user = self.users[index % users];
        // 1,009 is prime: (round × 1,009 + user) mod videos differs for every round of a user.
        let video = self.videos[(index / users * 1_009 + index % users) % videos];
        (user, video)
    }

    /// Writes `events` events (rounded up to an even number), and says how fast.
    pub async fn write(&self, events: usize) -> anyhow::Result<(usize, f64)> {
        let pairs = events.div_ceil(2);
        anyhow::ensure!(
            pairs <= self.users.len() * self.videos.len(),
            "more pairs than the data set has"
        );
        let started = Instant::now();
        let mut chunks = JoinSet::new();
        let mut written = 0;
        for first in (0..pairs).step_by(PAIRS_PER_CHUNK) {
            let chunk: Vec<_> = (first..(first + PAIRS_PER_CHUNK).min(pairs))
                .map(|index| self.pair(index))
                .collect();
            let events = self.toggled_twice(&chunk).await?;
            while chunks.len() >= CHUNKS_AT_ONCE {
                written += chunks.join_next().await.expect("not empty")??;
            }
            let repository = PostgresEventRepository::new(self.pool.clone());
            chunks.spawn(async move {
                repository.persist::<Like>(&events, None).await?;
                anyhow::Ok(events.len())
            });
        }
        while let Some(stored) = chunks.join_next().await {
            written += stored??;
        }
        Ok((written, written as f64 / started.elapsed().as_secs_f64()))
    }

    /// Each pair's two toggles, after the events it already has.
    async fn toggled_twice(
        &self,
        pairs: &[(i64, (i64, i64))],
    ) -> anyhow::Result<Vec<SerializedEvent>> {
        let ids: Vec<String> = pairs
            .iter()
            .map(|(user, (video, _))| {
                Ok(Like::id(
                    VideoId::try_from(*video)?,
                    UserId::try_from(*user)?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        // Each pair's last event so far: whether it is liked, and its sequence.
        let last: HashMap<String, (i64, String)> = sqlx::query_as(
            "SELECT DISTINCT ON (aggregate_id) aggregate_id, sequence, event_type
               FROM events WHERE aggregate_type = 'like' AND aggregate_id = ANY($1)
              ORDER BY aggregate_id, sequence DESC",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|(id, sequence, event_type): (String, i64, String)| (id, (sequence, event_type)))
        .collect();
        let at = chrono::Utc::now().timestamp_millis();
        let mut events = Vec::with_capacity(pairs.len() * 2);
        for (id, (user, (video, author))) in ids.into_iter().zip(pairs) {
            let (video_id, user_id) = (VideoId::try_from(*video)?, UserId::try_from(*user)?);
            let video_author_id = UserId::try_from(*author)?;
            let like = LikeCommand::Like {
                video_id,
                user_id,
                video_author_id,
                at,
            };
            let unlike = LikeCommand::Unlike {
                video_id,
                user_id,
                video_author_id,
            };
            let (mut sequence, liked) =
                last.get(&id).map_or((0, false), |(sequence, event_type)| {
                    (*sequence as usize, event_type == "VideoLiked")
                });
            let mut aggregate = Like::default();
            let commands = if liked {
                aggregate.apply(domain::like::LikeEvent::VideoLiked {
                    video_id,
                    user_id,
                    video_author_id,
                    liked_at: at,
                });
                [unlike, like]
            } else {
                [like, unlike]
            };
            for command in commands {
                for payload in aggregate.decide(command) {
                    sequence += 1;
                    let envelope = EventEnvelope::<Like> {
                        aggregate_id: id.clone(),
                        sequence,
                        payload: payload.clone(),
                        metadata: HashMap::new(),
                    };
                    events.push(SerializedEvent::try_from(&envelope)?);
                    aggregate.apply(payload);
                }
            }
        }
        Ok(events)
    }
}
