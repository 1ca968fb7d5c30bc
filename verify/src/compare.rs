//! Differences between what the fold says the read models should hold and what they hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::models::Models;
use crate::read_models::Redis;

/// Where a difference was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Store {
    Postgres,
    Redis,
    Topics,
}

/// One entry of a read model (or one aggregate on the topics) that disagrees with the events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Difference {
    pub store: Store,
    /// What disagrees: `user 5 follower_count`, `like (5, 17)`.
    pub entry: String,
    /// What the events say.
    pub expected: String,
    pub found: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {}: the events say {}, found {}",
            self.store, self.entry, self.expected, self.found
        )
    }
}

const PRESENT: &str = "present";
const ABSENT: &str = "absent";

struct Differences {
    store: Store,
    found: Vec<Difference>,
}

impl Differences {
    fn add(&mut self, entry: String, expected: impl ToString, found: impl ToString) {
        self.found.push(Difference {
            store: self.store,
            entry,
            expected: expected.to_string(),
            found: found.to_string(),
        });
    }

    /// Members of one set and not the other.
    fn members<T: Ord + fmt::Debug>(
        &mut self,
        what: &str,
        expected: &BTreeSet<T>,
        found: &BTreeSet<T>,
    ) {
        for missing in expected.difference(found) {
            self.add(format!("{what} {missing:?}"), PRESENT, ABSENT);
        }
        for extra in found.difference(expected) {
            self.add(format!("{what} {extra:?}"), ABSENT, PRESENT);
        }
    }

    /// Entries of one map and not the other, and entries whose values differ.
    fn entries<V: PartialEq + fmt::Debug>(
        &mut self,
        what: &str,
        expected: &BTreeMap<i64, V>,
        found: &BTreeMap<i64, V>,
        compare: impl Fn(&mut Self, String, &V, &V),
    ) {
        for (id, value) in expected {
            match found.get(id) {
                None => self.add(format!("{what} {id}"), PRESENT, ABSENT),
                Some(found) => compare(self, format!("{what} {id}"), value, found),
            }
        }
        for id in found.keys().filter(|id| !expected.contains_key(id)) {
            self.add(format!("{what} {id}"), ABSENT, PRESENT);
        }
    }
}

/// The Postgres read models against the fold: every list and profile.
pub fn postgres(expected: &Models, found: &Models) -> Vec<Difference> {
    let mut differences = Differences {
        store: Store::Postgres,
        found: vec![],
    };
    differences.entries("user", &expected.users, &found.users, |d, entry, e, f| {
        if e.name != f.name {
            d.add(format!("{entry} name"), &e.name, &f.name);
        }
    });
    differences.entries(
        "video",
        &expected.videos,
        &found.videos,
        |d, entry, e, f| {
            if (e.author_id, &e.title) != (f.author_id, &f.title) {
                d.add(
                    format!("{entry} author and title"),
                    format!("{} {:?}", e.author_id, e.title),
                    format!("{} {:?}", f.author_id, f.title),
                );
            }
        },
    );
    differences.members("like (user, video)", &expected.likes, &found.likes);
    differences.members(
        "follow (follower, followee)",
        &expected.follows,
        &found.follows,
    );
    differences.entries(
        "comment",
        &expected.comments,
        &found.comments,
        |d, entry, e, f| {
            if e != f {
                d.add(entry, format!("{e:?}"), format!("{f:?}"));
            }
        },
    );
    differences.members("message", &expected.messages, &found.messages);
    differences.found
}

/// The Redis read models against the fold: cards and their counters, the feed, and the like
/// and follow sets the personal flags are read from.
pub fn redis(expected: &Models, found: &Redis) -> Vec<Difference> {
    let mut differences = Differences {
        store: Store::Redis,
        found: vec![],
    };
    differences.entries(
        "user",
        &expected.users,
        &found.models.users,
        |d, entry, e, f| {
            if e.name != f.name {
                d.add(format!("{entry} name"), &e.name, &f.name);
            }
            for ((field, e), (_, f)) in e.counters.named().into_iter().zip(f.counters.named()) {
                if e != f {
                    d.add(format!("{entry} {field}"), e, f);
                }
            }
        },
    );
    differences.entries(
        "video",
        &expected.videos,
        &found.models.videos,
        |d, entry, e, f| {
            if e.author_id != f.author_id {
                d.add(format!("{entry} author_id"), e.author_id, f.author_id);
            }
            if e.favorite_count != f.favorite_count {
                d.add(
                    format!("{entry} favorite_count"),
                    e.favorite_count,
                    f.favorite_count,
                );
            }
            if e.comment_count != f.comment_count {
                d.add(
                    format!("{entry} comment_count"),
                    e.comment_count,
                    f.comment_count,
                );
            }
        },
    );
    let videos: BTreeSet<i64> = expected.videos.keys().copied().collect();
    differences.members("feed video", &videos, &found.feed);
    differences.members("like (user, video)", &expected.likes, &found.models.likes);
    differences.members(
        "follow (follower, followee)",
        &expected.follows,
        &found.models.follows,
    );
    differences.found
}
