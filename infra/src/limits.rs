//! What the rate limits are, as settings name them: the limits and their rates. Counting
//! them (in Redis) is the HTTP services' business (`http_api::rate_limit`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// What is limited, and who by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Sign-ups from one address (an IPv6 /64).
    Register,
    /// Logins from one address, right or wrong.
    Login,
    /// Wrong passwords for one name from one address: guessing an owner's password is slowed
    /// down, but nobody elsewhere can lock the owner out.
    FailedLogin,
    /// Wrong passwords for one name from addresses that never signed in to it: guesses spread
    /// over many addresses (a /48 holds 65,536 /64s) are slowed down too, while the owner,
    /// from an address they signed in from before, is never held back by them.
    FailedLoginAccount,
    /// Likes, comments, follows and messages of one user.
    Write,
    /// Videos published by one user.
    Publish,
}

impl Limit {
    /// Its name in keys and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
            Self::FailedLogin => "failed-login",
            Self::FailedLoginAccount => "failed-login-account",
            Self::Write => "write",
            Self::Publish => "publish",
        }
    }

    /// Without Redis nobody can tell how often an address has tried: sign-ups and logins,
    /// which an attacker floods, are refused then (fail closed); the writes of a logged-in
    /// user go on (fail open), since each costs the attacker an account.
    pub fn fails_closed(self) -> bool {
        matches!(
            self,
            Self::Register | Self::Login | Self::FailedLogin | Self::FailedLoginAccount
        )
    }
}

/// A rate: `count` tries at once, and `count` again each `period`, spread evenly. Written
/// `20/10m` (also `s`, `h`; bare numbers are seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    pub const fn new(count: u32, period: Duration) -> Self {
        Self { count, period }
    }

    /// The steady gap between two tries.
    pub fn interval(self) -> Duration {
        self.period / self.count.max(1)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a rate is written COUNT/PERIOD, e.g. 20/10m (s, m or h), not {0:?}")]
pub struct BadRate(String);

impl FromStr for Rate {
    type Err = BadRate;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadRate(text.to_owned());
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let (number, unit) = match period.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => period.split_at(at),
            None => (period, "s"),
        };
        let number: u64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => number,
            "m" => number * 60,
            "h" => number * 3600,
            _ => return Err(bad()),
        };
        if count == 0 || seconds == 0 {
            return Err(bad());
        }
        Ok(Self::new(count, Duration::from_secs(seconds)))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.count, self.period.as_secs())
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
