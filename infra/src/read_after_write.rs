//! What the projector and the relay tell the command APIs about events, so that a write is
//! answered once it is readable (docs/architecture.md, "Read after write").
//!
//! The projector sends, after each batch, where every aggregate of the batch stands: its
//! last applied sequence, and whether Redis took it too. The relay sends the events it
//! parks. Both go out as Postgres notifications (`NOTIFY`), one line per aggregate: a
//! command API listens on one connection and wakes the requests waiting for those
//! aggregates, whichever projector or relay sent them, and no one polls a read store.

use std::fmt;

use domain::comment::Comment;
use domain::conversation::Conversation;
use domain::follow::Follow;
use domain::like::Like;
use domain::user::User;
use domain::video::Video;

/// The channel, in the read store's database, on which projectors say what they applied.
pub const APPLIED_CHANNEL: &str = "read_models_applied";

/// The channel, in the event store's database, on which relays say what they parked.
pub const PARKED_CHANNEL: &str = "outbox_parked";

/// The aggregate types whose events the projector applies to a read model: the only ones a
/// write waits for (an account's events change no read model). The projector's planning is
/// tested against this list.
pub const PROJECTED: [&str; 6] = [
    <User as cqrs_es::Aggregate>::TYPE,
    <Video as cqrs_es::Aggregate>::TYPE,
    <Like as cqrs_es::Aggregate>::TYPE,
    <Comment as cqrs_es::Aggregate>::TYPE,
    <Follow as cqrs_es::Aggregate>::TYPE,
    <Conversation as cqrs_es::Aggregate>::TYPE,
];

/// Whether the read models follow aggregate type `aggregate_type`.
pub fn projected(aggregate_type: &str) -> bool {
    PROJECTED.contains(&aggregate_type)
}

/// How far an aggregate's events got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reached {
    /// Applied to every read model, up to the sequence given.
    Applied,
    /// Applied to Postgres up to the sequence given; Redis is away or being rebuilt, and takes
    /// it later.
    PostgresOnly,
    /// The event at the sequence given is dead-lettered; its aggregate is held back after it.
    DeadLettered,
    /// The event at the sequence given is held back behind a dead letter of its aggregate.
    HeldBack,
    /// The relay parked the event at the sequence given: it is not published until an
    /// operator acts.
    Parked,
}

impl Reached {
    const ALL: [Self; 5] = [
        Self::Applied,
        Self::PostgresOnly,
        Self::DeadLettered,
        Self::HeldBack,
        Self::Parked,
    ];

    /// Its label in logs and metrics, and its word in a notification.
    pub fn name(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::PostgresOnly => "postgres_only",
            Self::DeadLettered => "dead_lettered",
            Self::HeldBack => "held_back",
            Self::Parked => "parked",
        }
    }

    /// Whether the events up to the sequence are applied (rather than one of them stopped).
    pub fn is_progress(self) -> bool {
        matches!(self, Self::Applied | Self::PostgresOnly)
    }
}

/// Where one aggregate's events stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub reached: Reached,
    pub sequence: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
}

impl fmt::Display for Notice {
    /// `<reached> <sequence> <aggregate type> <aggregate id>`: the id last, as it may hold
    /// any character but a line break.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.reached.name(),
            self.sequence,
            self.aggregate_type,
            self.aggregate_id
        )
    }
}

impl Notice {
    /// One line of a notification; None if it is not one this build sends.
    pub fn parse(line: &str) -> Option<Self> {
        let mut parts = line.splitn(4, ' ');
        let reached = parts.next()?;
        let reached = Reached::ALL.into_iter().find(|r| r.name() == reached)?;
        Some(Self {
            reached,
            sequence: parts.next()?.parse().ok()?,
            aggregate_type: parts.next()?.to_owned(),
            aggregate_id: parts.next()?.to_owned(),
        })
    }
}

/// Postgres refuses a notification's payload from 8,000 bytes.
const PAYLOAD_AT_MOST: usize = 7_900;

/// `notices` as notification payloads, each under Postgres's limit; a notice whose line
/// alone would pass it (an aggregate id of kilobytes, which no command makes) is left out.
pub fn payloads(notices: &[Notice]) -> Vec<String> {
    let mut payloads = vec![];
    let mut payload = String::new();
    for notice in notices {
        let line = notice.to_string();
        if line.len() >= PAYLOAD_AT_MOST || line.contains('\n') {
            continue;
        }
        if payload.len() + line.len() + 1 > PAYLOAD_AT_MOST {
            payloads.push(std::mem::take(&mut payload));
        }
        if !payload.is_empty() {
            payload.push('\n');
        }
        payload.push_str(&line);
    }
    if !payload.is_empty() {
        payloads.push(payload);
    }
    payloads
}

/// The notices of one notification's payload (lines this build does not know are skipped).
pub fn parse_payload(payload: &str) -> impl Iterator<Item = Notice> + '_ {
    payload.lines().filter_map(Notice::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(reached: Reached, sequence: i64, id: &str) -> Notice {
        Notice {
            reached,
            sequence,
            aggregate_type: "like".to_owned(),
            aggregate_id: id.to_owned(),
        }
    }

    #[test]
    fn notices_go_through_a_payload_unchanged() {
        let notices = vec![
            notice(Reached::Applied, 3, "7:9"),
            notice(Reached::PostgresOnly, 1, "an id with spaces"),
            notice(Reached::Parked, 12, "x"),
        ];
        let payloads = payloads(&notices);
        assert_eq!(payloads.len(), 1);
        assert_eq!(parse_payload(&payloads[0]).collect::<Vec<_>>(), notices);
    }

    #[test]
    fn a_large_batch_is_split_under_the_limit_and_nothing_is_lost() {
        let notices: Vec<Notice> = (0..2_000)
            .map(|i| notice(Reached::Applied, i, &format!("{i}:{i}")))
            .collect();
        let payloads = payloads(&notices);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() < 8_000));
        let back: Vec<Notice> = payloads.iter().flat_map(|p| parse_payload(p)).collect();
        assert_eq!(back, notices);
    }

    #[test]
    fn lines_from_another_build_are_skipped() {
        assert_eq!(
            parse_payload("gone 3 like 1:2\napplied x like 1:2").count(),
            0
        );
    }

    #[test]
    fn accounts_are_not_waited_for() {
        assert!(projected("like") && projected("user"));
        assert!(!projected("account"));
    }
}
