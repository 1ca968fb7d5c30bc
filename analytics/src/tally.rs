//! A batch of messages turned into counter changes, without IO: which events are new (given
//! what was seen of their aggregates), and what the new ones add to each hour.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::facts::{self, Action, Incoming, Message, Position};

/// An aggregate: its type and id.
pub type Aggregate = (String, String);

/// Which events of one aggregate have been counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Every sequence from 1 to this one.
    pub through: i64,
    /// Sequences seen past a gap: nearly always none, as an aggregate's events come in order.
    pub beyond: BTreeSet<i64>,
}

impl Seen {
    /// Records `sequence`; false if it was seen before (a repeat).
    pub fn first_time(&mut self, sequence: i64) -> bool {
        if sequence <= self.through || !self.beyond.insert(sequence) {
            return false;
        }
        while self.beyond.remove(&(self.through + 1)) {
            self.through += 1;
        }
        true
    }
}

/// What one hour's events add to its counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: i64,
    pub videos_published: i64,
    pub likes: i64,
    pub unlikes: i64,
    pub comments_posted: i64,
    pub comments_deleted: i64,
    pub follows: i64,
    pub unfollows: i64,
    pub messages_sent: i64,
    pub sign_ups: i64,
}

/// Likes given and taken back, of one video in one hour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoLikes {
    pub likes: i64,
    pub unlikes: i64,
}

/// A message not counted, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The event id, or `<topic>/<partition>@<offset>` for a message that is not an event.
    pub id: String,
    pub position: Position,
    pub event_type: Option<String>,
    pub event_version: Option<u32>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub reason: String,
}

/// What a batch adds.
#[derive(Debug, Default)]
pub struct Tally {
    pub hours: BTreeMap<DateTime<Utc>, Counts>,
    pub active_users: BTreeSet<(DateTime<Utc>, i64)>,
    pub video_likes: BTreeMap<(DateTime<Utc>, i64), VideoLikes>,
    pub skipped: Vec<Skipped>,
    /// Aggregates whose [`Seen`] changed: to be written back.
    pub changed: BTreeSet<Aggregate>,
    /// Events counted.
    pub applied: u64,
    /// Events seen before, dropped.
    pub repeats: u64,
}

/// The aggregates of the events in `batch`, each once: what must be read (and locked) first.
pub fn aggregates(batch: &[Incoming]) -> BTreeSet<Aggregate> {
    batch
        .iter()
        .filter_map(|incoming| match &incoming.message {
            Message::Event(event) => {
                Some((event.aggregate_type.clone(), event.aggregate_id.clone()))
            }
            Message::NotAnEvent(_) => None,
        })
        .collect()
}

/// Counts the new events of `batch`, in order, updating `seen`: it holds every aggregate of
/// the batch (a default [`Seen`] for one never seen). An event counted and its repeat later in
/// the same batch count once.
pub fn tally(batch: &[Incoming], seen: &mut HashMap<Aggregate, Seen>) -> Tally {
    let mut tally = Tally::default();
    for incoming in batch {
        let event = match &incoming.message {
            Message::Event(event) => event,
            Message::NotAnEvent(reason) => {
                let position = &incoming.position;
                tally.skipped.push(Skipped {
                    id: format!(
                        "{}/{}@{}",
                        position.topic, position.partition, position.offset
                    ),
                    position: position.clone(),
                    event_type: None,
                    event_version: None,
                    occurred_at: None,
                    reason: reason.clone(),
                });
                continue;
            }
        };
        let aggregate = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let first_time = seen
            .entry(aggregate.clone())
            .or_default()
            .first_time(event.sequence);
        if !first_time {
            tally.repeats += 1;
            continue;
        }
        // An event not counted is still marked seen: a consumer that learns to read it is a
        // new build, which counts from the beginning again (docs/consuming-events.md).
        tally.changed.insert(aggregate);
        match facts::read(event) {
            Ok(fact) => {
                tally.applied += 1;
                tally.add(fact);
            }
            Err(unknown) => tally.skipped.push(Skipped {
                id: event.event_id.clone(),
                position: incoming.position.clone(),
                event_type: Some(event.event_type.clone()),
                event_version: Some(event.event_version),
                occurred_at: Some(event.occurred_at),
                reason: unknown.to_string(),
            }),
        }
    }
    tally
}

impl Tally {
    fn add(&mut self, fact: facts::Fact) {
        let counts = self.hours.entry(fact.hour).or_default();
        counts.events += 1;
        self.active_users.insert((fact.hour, fact.actor));
        match fact.action {
            Action::AccountOpened => {}
            Action::SignedUp => counts.sign_ups += 1,
            Action::VideoPublished => counts.videos_published += 1,
            Action::Liked { video_id } => {
                counts.likes += 1;
                self.video_likes
                    .entry((fact.hour, video_id))
                    .or_default()
                    .likes += 1;
            }
            Action::Unliked { video_id } => {
                counts.unlikes += 1;
                self.video_likes
                    .entry((fact.hour, video_id))
                    .or_default()
                    .unlikes += 1;
            }
            Action::CommentPosted => counts.comments_posted += 1,
            Action::CommentDeleted => counts.comments_deleted += 1,
            Action::Followed => counts.follows += 1,
            Action::Unfollowed => counts.unfollows += 1,
            Action::MessageSent => counts.messages_sent += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::envelope::PublishedEvent;
    use serde_json::json;

    fn seen(sequences: &[i64]) -> (Seen, Vec<bool>) {
        let mut seen = Seen::default();
        let firsts = sequences.iter().map(|s| seen.first_time(*s)).collect();
        (seen, firsts)
    }

    #[test]
    fn an_aggregate_remembers_every_sequence_it_saw_in_any_order() {
        let (all, firsts) = seen(&[1, 2, 3]);
        assert_eq!(all.through, 3);
        assert_eq!(firsts, [true, true, true]);
        let (_, firsts) = seen(&[1, 2, 2, 1, 3]);
        assert_eq!(firsts, [true, true, false, false, true]);
        let (gap, firsts) = seen(&[1, 3, 4, 3]);
        assert_eq!(firsts, [true, true, true, false]);
        assert_eq!((gap.through, gap.beyond), (1, BTreeSet::from([3, 4])));
        let (filled, firsts) = seen(&[2, 3, 1, 2]);
        assert_eq!(firsts, [true, true, true, false]);
        assert_eq!((filled.through, filled.beyond.len()), (3, 0));
    }

    fn incoming(offset: i64, event_type: &str, aggregate_id: &str, sequence: i64) -> Incoming {
        let (video, user) = aggregate_id.split_once(':').unwrap();
        let event = PublishedEvent {
            event_id: format!("like/{aggregate_id}/{sequence}"),
            event_type: event_type.to_owned(),
            event_version: 1,
            aggregate_type: "like".to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            occurred_at: "2026-12-06T10:15:00Z".parse().unwrap(),
            payload: json!({"video_id": video.parse::<i64>().unwrap(), "user_id": user.parse::<i64>().unwrap()})
                .as_object()
                .unwrap()
                .clone(),
        };
        Incoming::read(
            Position {
                topic: "douyin.like".to_owned(),
                partition: 0,
                offset,
            },
            Some(&event.to_json()),
        )
    }

    #[test]
    fn a_batch_counts_new_events_once_and_lists_what_it_skips() {
        let batch = [
            incoming(0, "VideoLiked", "9:1", 1),
            incoming(1, "VideoLiked", "9:2", 1),
            incoming(2, "VideoUnliked", "9:1", 2),
            incoming(3, "VideoLiked", "9:2", 1),
            incoming(4, "VideoShared", "9:3", 1),
            Incoming::read(
                Position {
                    topic: "douyin.like".to_owned(),
                    partition: 0,
                    offset: 5,
                },
                Some(b"hello"),
            ),
        ];
        let mut seen = HashMap::new();
        let tally = tally(&batch, &mut seen);
        let hour = "2026-12-06T10:00:00Z".parse().unwrap();
        assert_eq!((tally.applied, tally.repeats), (3, 1));
        assert_eq!(
            tally.hours[&hour],
            Counts {
                events: 3,
                likes: 2,
                unlikes: 1,
                ..Counts::default()
            }
        );
        assert_eq!(
            tally.video_likes[&(hour, 9)],
            VideoLikes {
                likes: 2,
                unlikes: 1
            }
        );
        assert_eq!(tally.active_users.len(), 2);
        let skipped: Vec<&str> = tally.skipped.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(skipped, ["like/9:3/1", "douyin.like/0@5"]);
        assert_eq!(tally.changed.len(), 3, "the unknown event is seen too");

        // The same batch again, as after a restart: nothing new.
        let again = super::tally(&batch, &mut seen);
        assert_eq!((again.applied, again.repeats), (0, 5));
        assert!(again.hours.is_empty() && again.changed.is_empty());
    }
}
