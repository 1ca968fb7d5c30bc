//! The report as a plain text table, for a terminal or a log.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::store::{Hour, Report};

const HOUR_FORMAT: &str = "%Y-%m-%d %H:00";

/// A column of the hourly table: its heading, and the value of an hour.
type Column = (&'static str, fn(&Hour) -> i64);

const COLUMNS: &[Column] = &[
    ("events", |h| h.events),
    ("videos", |h| h.videos_published),
    ("likes", |h| h.likes),
    ("unliked", |h| h.unlikes),
    ("net likes", |h| h.net_likes),
    ("comments", |h| h.comments_posted),
    ("deleted", |h| h.comments_deleted),
    ("follows", |h| h.follows),
    ("unfollows", |h| h.unfollows),
    ("messages", |h| h.messages_sent),
    ("sign-ups", |h| h.sign_ups),
    ("active users", |h| h.active_users),
];

fn hour(at: DateTime<Utc>) -> String {
    at.format(HOUR_FORMAT).to_string()
}

/// Lines of cells, each column as wide as its widest cell; the first column left-aligned, the
/// others right-aligned if they hold numbers.
fn table(rows: &[Vec<String>], numbers: bool) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                if column == 0 || !numbers {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span = (self.to - self.from).num_hours();
        if self.hours.is_empty() {
            write!(
                f,
                "no events counted in the {span} hour(s) from {} to {} (UTC)",
                hour(self.from),
                hour(self.to)
            )?;
            match self.latest {
                Some(latest) => writeln!(
                    f,
                    "; the latest hour with events is {} (see --hours)",
                    hour(latest)
                )?,
                None => writeln!(f, "; none counted yet")?,
            }
        } else {
            writeln!(
                f,
                "hours with events among the {span} from {} to {} (UTC); likes are given, \
                 unliked taken back",
                hour(self.from),
                hour(self.to)
            )?;
            let mut rows = vec![std::iter::once("hour (UTC)")
                .chain(COLUMNS.iter().map(|(heading, _)| *heading))
                .map(str::to_owned)
                .collect::<Vec<_>>()];
            for h in &self.hours {
                rows.push(
                    std::iter::once(hour(h.hour))
                        .chain(COLUMNS.iter().map(|(_, value)| value(h).to_string()))
                        .collect(),
                );
            }
            f.write_str(&table(&rows, true))?;

            let liked: Vec<&Hour> = self
                .hours
                .iter()
                .filter(|h| !h.top_videos.is_empty())
                .collect();
            if !liked.is_empty() {
                writeln!(f)?;
                writeln!(
                    f,
                    "most liked videos of the hour, by net likes (video id: net)"
                )?;
                let mut rows = vec![vec!["hour (UTC)".to_owned(), "top ten".to_owned()]];
                for h in liked {
                    let top: Vec<String> = h
                        .top_videos
                        .iter()
                        .map(|video| format!("{}: {:+}", video.video_id, video.net_likes))
                        .collect();
                    rows.push(vec![hour(h.hour), top.join(", ")]);
                }
                f.write_str(&table(&rows, false))?;
            }
        }
        if !self.skipped.is_empty() {
            writeln!(f)?;
            writeln!(f, "messages not counted (ever), by kind:")?;
            for kind in &self.skipped {
                let version = kind
                    .event_version
                    .map(|v| format!(" v{v}"))
                    .unwrap_or_default();
                writeln!(
                    f,
                    "  {}{version}: {} ({})",
                    kind.event_type, kind.messages, kind.reason
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SkippedKind, TopVideo};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn hours_print_as_an_aligned_table_with_their_top_videos() {
        let report = Report {
            from: at("2026-12-06T08:00:00Z"),
            to: at("2026-12-06T11:00:00Z"),
            hours: vec![Hour {
                hour: at("2026-12-06T10:00:00Z"),
                events: 1234,
                videos_published: 2,
                likes: 3,
                unlikes: 1,
                net_likes: 2,
                comments_posted: 0,
                comments_deleted: 0,
                follows: 1,
                unfollows: 0,
                messages_sent: 1,
                sign_ups: 4,
                active_users: 4,
                top_videos: vec![
                    TopVideo {
                        video_id: 12,
                        net_likes: 2,
                        likes: 2,
                        unlikes: 0,
                    },
                    TopVideo {
                        video_id: 7,
                        net_likes: 1,
                        likes: 1,
                        unlikes: 0,
                    },
                ],
            }],
            skipped: vec![SkippedKind {
                event_type: "VideoLiked".to_owned(),
                event_version: Some(2),
                reason: "unknown version of a known event type".to_owned(),
                messages: 1,
            }],
            latest: Some(at("2026-12-06T10:00:00Z")),
        };
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("hour (UTC)        events  videos  likes"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("2026-12-06 10:00    1234       2      3"),
            "{text}"
        );
        assert!(lines[2].ends_with("            4"), "{text}");
        assert!(text.contains("2026-12-06 10:00  12: +2, 7: +1"), "{text}");
        assert!(text.contains("VideoLiked v2: 1 (unknown version"), "{text}");
    }

    #[test]
    fn an_empty_window_says_where_the_events_are() {
        let report = Report {
            from: at("2026-12-06T08:00:00Z"),
            to: at("2026-12-06T11:00:00Z"),
            hours: vec![],
            skipped: vec![],
            latest: Some(at("2026-12-01T10:00:00Z")),
        };
        assert_eq!(
            report.to_string(),
            "no events counted in the 3 hour(s) from 2026-12-06 08:00 to 2026-12-06 11:00 \
             (UTC); the latest hour with events is 2026-12-01 10:00 (see --hours)\n"
        );
    }
}
