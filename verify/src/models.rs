//! The read models' content in one shape, whichever source it was read from: the fold of the
//! event store (what they should hold), the Postgres read database, or Redis.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Models {
    pub users: BTreeMap<i64, User>,
    pub videos: BTreeMap<i64, Video>,
    /// `(user, video)`: the user likes the video now.
    pub likes: BTreeSet<(i64, i64)>,
    /// `(follower, followee)`.
    pub follows: BTreeSet<(i64, i64)>,
    /// Comments not deleted, by id.
    pub comments: BTreeMap<i64, Comment>,
    pub messages: BTreeSet<i64>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub counters: UserCounters,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UserCounters {
    pub follow_count: i64,
    pub follower_count: i64,
    pub total_favorited: i64,
    pub work_count: i64,
    pub favorite_count: i64,
}

impl UserCounters {
    /// Each counter with the name of its field in the user's Redis hash.
    pub fn named(&self) -> [(&'static str, i64); 5] {
        [
            ("follow_count", self.follow_count),
            ("follower_count", self.follower_count),
            ("total_favorited", self.total_favorited),
            ("work_count", self.work_count),
            ("favorite_count", self.favorite_count),
        ]
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Video {
    pub author_id: i64,
    pub title: String,
    pub favorite_count: i64,
    pub comment_count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comment {
    pub video_id: i64,
    pub user_id: i64,
}

impl Models {
    /// Works out every counter from the memberships and lists (the fold's counters are not
    /// kept as it goes: they are what the lists imply).
    pub fn count(&mut self) {
        for user in self.users.values_mut() {
            user.counters = UserCounters::default();
        }
        for video in self.videos.values_mut() {
            video.favorite_count = 0;
            video.comment_count = 0;
        }
        for &(follower, followee) in &self.follows {
            if let Some(user) = self.users.get_mut(&follower) {
                user.counters.follow_count += 1;
            }
            if let Some(user) = self.users.get_mut(&followee) {
                user.counters.follower_count += 1;
            }
        }
        for video in self.videos.values() {
            if let Some(author) = self.users.get_mut(&video.author_id) {
                author.counters.work_count += 1;
            }
        }
        for &(user_id, video_id) in &self.likes {
            if let Some(user) = self.users.get_mut(&user_id) {
                user.counters.favorite_count += 1;
            }
            if let Some(video) = self.videos.get_mut(&video_id) {
                video.favorite_count += 1;
                let author = video.author_id;
                if let Some(author) = self.users.get_mut(&author) {
                    author.counters.total_favorited += 1;
                }
            }
        }
        for comment in self.comments.values() {
            if let Some(video) = self.videos.get_mut(&comment.video_id) {
                video.comment_count += 1;
            }
        }
    }
}
