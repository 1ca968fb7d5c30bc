//! The analytics database: the hourly tables, and what has been counted, written in one
//! transaction per batch (so a batch counts entirely or not at all, and never twice).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::facts::Incoming;
use crate::tally::{self, Aggregate, Seen, Tally};
use crate::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Messages handled.
    pub messages: u64,
    /// Events counted.
    pub applied: u64,
    /// Events seen before, dropped.
    pub repeats: u64,
    /// Messages not counted: not events, or events of a type or version this build does not
    /// know (listed in `skipped_messages`).
    pub skipped: u64,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, other: Self) {
        self.messages += other.messages;
        self.applied += other.applied;
        self.repeats += other.repeats;
        self.skipped += other.skipped;
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = PgPoolOptions::new()
            // One batch is written at a time; a report reads beside it.
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Counts the new events of `batch`, and records them as seen, in one transaction. An error
    /// is the caller's to log (it retries).
    #[tracing::instrument(skip_all, fields(messages = batch.len()))]
    pub async fn apply(&self, batch: &[Incoming]) -> Result<Outcome, Error> {
        let mut transaction = self.pool.begin().await?;
        let mut seen = lock_seen(&mut transaction, &tally::aggregates(batch)).await?;
        let tally = tally::tally(batch, &mut seen);
        write_counts(&mut transaction, &tally).await?;
        write_skipped(&mut transaction, &tally).await?;
        write_seen(&mut transaction, &tally, &seen).await?;
        transaction.commit().await?;
        for skipped in &tally.skipped {
            tracing::warn!(
                id = %skipped.id,
                event_type = skipped.event_type.as_deref(),
                event_version = skipped.event_version,
                reason = %skipped.reason,
                "message skipped: not counted"
            );
        }
        Ok(Outcome {
            messages: batch.len() as u64,
            applied: tally.applied,
            repeats: tally.repeats,
            skipped: tally.skipped.len() as u64,
        })
    }

    /// The hours in `[from, to)` that have counted events, oldest first, with their top videos;
    /// and what was skipped, ever.
    #[tracing::instrument(skip(self), err)]
    pub async fn report(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Report, Error> {
        let hours = sqlx::query(
            "SELECT hour, events, videos_published, likes, unlikes, net_likes, comments_posted,
                    comments_deleted, follows, unfollows, messages_sent, sign_ups, active_users
             FROM hourly WHERE hour >= $1 AND hour < $2 ORDER BY hour",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| -> Result<Hour, sqlx::Error> {
            Ok(Hour {
                hour: row.try_get("hour")?,
                events: row.try_get("events")?,
                videos_published: row.try_get("videos_published")?,
                likes: row.try_get("likes")?,
                unlikes: row.try_get("unlikes")?,
                net_likes: row.try_get("net_likes")?,
                comments_posted: row.try_get("comments_posted")?,
                comments_deleted: row.try_get("comments_deleted")?,
                follows: row.try_get("follows")?,
                unfollows: row.try_get("unfollows")?,
                messages_sent: row.try_get("messages_sent")?,
                sign_ups: row.try_get("sign_ups")?,
                active_users: row.try_get("active_users")?,
                top_videos: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
        let mut tops: BTreeMap<DateTime<Utc>, Vec<TopVideo>> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT hour, video_id, net_likes, likes, unlikes FROM hourly_top_videos
             WHERE hour >= $1 AND hour < $2 ORDER BY hour, rank",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        {
            tops.entry(row.try_get("hour")?)
                .or_default()
                .push(TopVideo {
                    video_id: row.try_get("video_id")?,
                    net_likes: row.try_get("net_likes")?,
                    likes: row.try_get("likes")?,
                    unlikes: row.try_get("unlikes")?,
                });
        }
        let hours = hours
            .into_iter()
            .map(|mut hour| {
                hour.top_videos = tops.remove(&hour.hour).unwrap_or_default();
                hour
            })
            .collect();
        let skipped = sqlx::query(
            "SELECT coalesce(event_type, '(not an event)') AS event_type, event_version, reason,
                    count(*) AS messages
             FROM skipped_messages GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| -> Result<SkippedKind, sqlx::Error> {
            Ok(SkippedKind {
                event_type: row.try_get("event_type")?,
                event_version: row.try_get("event_version")?,
                reason: row.try_get("reason")?,
                messages: row.try_get("messages")?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
        let latest: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT max(hour) FROM hourly_counts")
                .fetch_one(&self.pool)
                .await?;
        Ok(Report {
            from,
            to,
            hours,
            skipped,
            latest,
        })
    }

    /// The report of the `hours` hours up to and including the current one.
    pub async fn report_last(&self, hours: u32) -> Result<Report, Error> {
        let to = crate::facts::hour_of(Utc::now()) + TimeDelta::hours(1);
        self.report(to - TimeDelta::hours(i64::from(hours)), to)
            .await
    }
}

/// The hourly numbers of some hours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The hours with counted events, oldest first.
    pub hours: Vec<Hour>,
    /// Messages not counted, by kind, over all time.
    pub skipped: Vec<SkippedKind>,
    /// The latest hour with counted events, in the window or not.
    pub latest: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hour {
    pub hour: DateTime<Utc>,
    pub events: i64,
    pub videos_published: i64,
    pub likes: i64,
    pub unlikes: i64,
    pub net_likes: i64,
    pub comments_posted: i64,
    pub comments_deleted: i64,
    pub follows: i64,
    pub unfollows: i64,
    pub messages_sent: i64,
    pub sign_ups: i64,
    pub active_users: i64,
    /// At most ten, most net likes first.
    pub top_videos: Vec<TopVideo>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopVideo {
    pub video_id: i64,
    pub net_likes: i64,
    pub likes: i64,
    pub unlikes: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKind {
    pub event_type: String,
    pub event_version: Option<i64>,
    pub reason: String,
    pub messages: i64,
}

/// What has been seen of `aggregates`, their rows locked until the transaction ends: a second
/// consumer handed the same messages (during a rebalance) waits, then sees them as repeats.
/// Rows are made for aggregates never seen, in key order (so two such consumers lock in the
/// same order and do not deadlock).
async fn lock_seen(
    transaction: &mut Transaction<'_, Postgres>,
    aggregates: &std::collections::BTreeSet<Aggregate>,
) -> Result<HashMap<Aggregate, Seen>, Error> {
    if aggregates.is_empty() {
        return Ok(HashMap::new());
    }
    let (types, ids): (Vec<&str>, Vec<&str>) = aggregates
        .iter()
        .map(|(t, i)| (t.as_str(), i.as_str()))
        .unzip();
    // `DO UPDATE` (to itself) rather than `DO NOTHING`: it locks the existing rows and returns
    // them with the new ones, in one statement.
    let rows = sqlx::query(
        "INSERT INTO seen_aggregates (aggregate_type, aggregate_id)
         SELECT * FROM UNNEST($1::text[], $2::text[])
         ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET through = seen_aggregates.through
         RETURNING aggregate_type, aggregate_id, through, beyond",
    )
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut **transaction)
    .await?;
    rows.into_iter()
        .map(|row| {
            let beyond: Vec<i64> = row.try_get("beyond")?;
            Ok((
                (row.try_get("aggregate_type")?, row.try_get("aggregate_id")?),
                Seen {
                    through: row.try_get("through")?,
                    beyond: beyond.into_iter().collect(),
                },
            ))
        })
        .collect()
}

async fn write_counts(
    transaction: &mut Transaction<'_, Postgres>,
    tally: &Tally,
) -> Result<(), Error> {
    if !tally.hours.is_empty() {
        let column =
            |of: fn(&tally::Counts) -> i64| -> Vec<i64> { tally.hours.values().map(of).collect() };
        let hours: Vec<DateTime<Utc>> = tally.hours.keys().copied().collect();
        sqlx::query(
            "INSERT INTO hourly_counts AS c (hour, events, videos_published, likes, unlikes,
                 comments_posted, comments_deleted, follows, unfollows, messages_sent, sign_ups)
             SELECT * FROM UNNEST($1::timestamptz[], $2::int8[], $3::int8[], $4::int8[],
                 $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                 $11::int8[])
             ON CONFLICT (hour) DO UPDATE SET
                 events = c.events + EXCLUDED.events,
                 videos_published = c.videos_published + EXCLUDED.videos_published,
                 likes = c.likes + EXCLUDED.likes,
                 unlikes = c.unlikes + EXCLUDED.unlikes,
                 comments_posted = c.comments_posted + EXCLUDED.comments_posted,
                 comments_deleted = c.comments_deleted + EXCLUDED.comments_deleted,
                 follows = c.follows + EXCLUDED.follows,
                 unfollows = c.unfollows + EXCLUDED.unfollows,
                 messages_sent = c.messages_sent + EXCLUDED.messages_sent,
                 sign_ups = c.sign_ups + EXCLUDED.sign_ups",
        )
        .bind(&hours)
        .bind(column(|c| c.events))
        .bind(column(|c| c.videos_published))
        .bind(column(|c| c.likes))
        .bind(column(|c| c.unlikes))
        .bind(column(|c| c.comments_posted))
        .bind(column(|c| c.comments_deleted))
        .bind(column(|c| c.follows))
        .bind(column(|c| c.unfollows))
        .bind(column(|c| c.messages_sent))
        .bind(column(|c| c.sign_ups))
        .execute(&mut **transaction)
        .await?;
    }
    if !tally.active_users.is_empty() {
        let (hours, users): (Vec<DateTime<Utc>>, Vec<i64>) =
            tally.active_users.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO hourly_active_users (hour, user_id)
             SELECT * FROM UNNEST($1::timestamptz[], $2::int8[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&hours)
        .bind(&users)
        .execute(&mut **transaction)
        .await?;
    }
    if !tally.video_likes.is_empty() {
        let hours: Vec<DateTime<Utc>> = tally.video_likes.keys().map(|(h, _)| *h).collect();
        let videos: Vec<i64> = tally.video_likes.keys().map(|(_, v)| *v).collect();
        let likes: Vec<i64> = tally.video_likes.values().map(|l| l.likes).collect();
        let unlikes: Vec<i64> = tally.video_likes.values().map(|l| l.unlikes).collect();
        sqlx::query(
            "INSERT INTO hourly_video_likes AS v (hour, video_id, likes, unlikes)
             SELECT * FROM UNNEST($1::timestamptz[], $2::int8[], $3::int8[], $4::int8[])
             ON CONFLICT (hour, video_id) DO UPDATE SET
                 likes = v.likes + EXCLUDED.likes, unlikes = v.unlikes + EXCLUDED.unlikes",
        )
        .bind(&hours)
        .bind(&videos)
        .bind(&likes)
        .bind(&unlikes)
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}

async fn write_skipped(
    transaction: &mut Transaction<'_, Postgres>,
    tally: &Tally,
) -> Result<(), Error> {
    for skipped in &tally.skipped {
        // Rare: one statement each is fine.
        sqlx::query(
            "INSERT INTO skipped_messages
                 (id, topic, kafka_partition, kafka_offset, event_type, event_version,
                  occurred_at, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&skipped.id)
        .bind(&skipped.position.topic)
        .bind(skipped.position.partition)
        .bind(skipped.position.offset)
        .bind(&skipped.event_type)
        .bind(skipped.event_version.map(i64::from))
        .bind(skipped.occurred_at)
        .bind(&skipped.reason)
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}

async fn write_seen(
    transaction: &mut Transaction<'_, Postgres>,
    tally: &Tally,
    seen: &HashMap<Aggregate, Seen>,
) -> Result<(), Error> {
    if tally.changed.is_empty() {
        return Ok(());
    }
    let mut types = Vec::new();
    let mut ids = Vec::new();
    let mut throughs = Vec::new();
    // Arrays of arrays must be rectangular in Postgres: each `beyond` goes as its text form.
    let mut beyonds = Vec::new();
    for aggregate in &tally.changed {
        let of = &seen[aggregate];
        types.push(aggregate.0.as_str());
        ids.push(aggregate.1.as_str());
        throughs.push(of.through);
        let listed: Vec<String> = of.beyond.iter().map(i64::to_string).collect();
        beyonds.push(format!("{{{}}}", listed.join(",")));
    }
    sqlx::query(
        "UPDATE seen_aggregates s SET through = u.through, beyond = u.beyond::int8[]
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[])
             AS u(aggregate_type, aggregate_id, through, beyond)
         WHERE s.aggregate_type = u.aggregate_type AND s.aggregate_id = u.aggregate_id",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&throughs)
    .bind(&beyonds)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}
