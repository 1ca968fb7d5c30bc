//! Rate limits shared by every instance of a service: each is counted in Redis, under keys of
//! its own (`RATE_LIMIT_KEY_PREFIX`, outside the read models' prefix, so no rebuild ever
//! wipes them), with the generic cell rate algorithm: one timestamp a key, no counters to
//! reset, and a burst allowed on top of a steady rate.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use domain::user::UserName;
use domain::UserId;
use ipnet::Ipv6Net;
use redis::aio::ConnectionManager;
use redis::Script;

use infra::settings::RateLimitSettings;

use crate::http::ApiError;

pub use infra::limits::{BadRate, Limit, Rate};

/// Who a limit counts: an address, a user, or a name tried from an address.
#[derive(Debug, Clone)]
pub struct Subject(String);

impl Subject {
    /// An IPv4 address, or the /64 network of an IPv6 one: whoever holds one IPv6 address
    /// usually holds the 2^64 beside it, and would otherwise get a fresh limit with each.
    pub fn address(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(address) => Self(address.to_string()),
            IpAddr::V6(address) => {
                let network = Ipv6Net::new(address, 64).expect("64 is a valid IPv6 prefix length");
                Self(network.trunc().to_string())
            }
        }
    }

    /// The subject as its keys hold it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn user(user: UserId) -> Self {
        Self(user.to_string())
    }

    /// An account, by its name, from wherever it is tried.
    pub fn name(name: &UserName) -> Self {
        Self(name.as_str().to_owned())
    }

    /// A name tried from an address (or IPv6 /64). The name comes last, after a `|`, which
    /// no address or network contains, so two pairs never make one key.
    pub fn name_from(name: &UserName, address: IpAddr) -> Self {
        Self(format!("{}|{}", Self::address(address).0, name.as_str()))
    }
}

/// GCRA on one key: its value is the theoretical arrival time (ms) of the next try at the
/// steady rate. A try is allowed while that time, pushed on by one interval, stays within the
/// burst's reach of now. Redis's own clock is used, so instances need not agree on the time.
///
/// KEYS[1]: the key. ARGV[1]: the interval (ms); ARGV[2]: the burst; ARGV[3]: `take` to count
/// an allowed try, `peek` to only ask whether one would be allowed, `refund` to give back one
/// try taken (moving the arrival time back by one interval).
/// Returns 0 when allowed (or refunded), else the milliseconds until a try would be.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local reach = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if ARGV[3] == 'refund' then
  tat = tat - interval
  if tat > now then
    redis.call('SET', KEYS[1], tat, 'PX', tat - now)
  else
    redis.call('DEL', KEYS[1])
  end
  return 0
end
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > reach then
  return next_tat - now - reach
end
if ARGV[3] == 'take' then
  redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
end
return 0
";

/// How long an address an account signed in from stays one of its owner's.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// The keys of names signed in to from an address, beside the limits' keys.
const KNOWN: &str = "signed-in";

static GCRA_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limited; allowed again in {retry_after:?}")]
    Limited { retry_after: Duration },
    #[error("the rate limits cannot be counted")]
    Uncounted(#[source] redis::RedisError),
}

impl From<RateLimitError> for ApiError {
    fn from(error: RateLimitError) -> Self {
        match error {
            RateLimitError::Limited { retry_after } => Self::RateLimited { retry_after },
            RateLimitError::Uncounted(_) => Self::Unavailable(error.into()),
        }
    }
}

/// Every limit of a service. Clones share one Redis connection.
#[derive(Clone)]
pub struct RateLimits {
    redis: ConnectionManager,
    settings: RateLimitSettings,
}

impl RateLimits {
    pub fn new(redis: ConnectionManager, settings: RateLimitSettings) -> Self {
        if !settings.enabled() {
            tracing::warn!("RATE_LIMIT=off: nothing limits how often anyone may try");
        }
        Self { redis, settings }
    }

    /// Counts one try of `subject` against `limit`; refuses it past the limit.
    pub async fn take(&self, limit: Limit, subject: &Subject) -> Result<(), RateLimitError> {
        self.ask(limit, subject, "take").await
    }

    /// Refuses when one more try of `subject` would be past `limit`, counting nothing.
    pub async fn check(&self, limit: Limit, subject: &Subject) -> Result<(), RateLimitError> {
        self.ask(limit, subject, "peek").await
    }

    /// Gives back a try taken: a login whose password proved right was no guess. Taking
    /// before the password check and giving back after it, rather than counting only the
    /// failures, leaves no window in which simultaneous guesses all pass.
    /// At worst the try stays counted: a failure is logged, not answered.
    pub async fn give_back(&self, limit: Limit, subject: &Subject) {
        let _counted_still = self.ask(limit, subject, "refund").await;
    }

    /// Whether `subject` has tries counted against `limit` still (a wrong password not long
    /// ago, say). A Redis that does not answer says no.
    pub async fn counted(&self, limit: Limit, subject: &Subject) -> bool {
        self.settings.enabled() && self.exists(&self.key(limit.name(), subject)).await
    }

    /// Remembers that `subject` (a name from an address) signed in, for [`KNOWN_FOR`].
    pub async fn remember(&self, subject: &Subject) {
        if !self.settings.enabled() {
            return;
        }
        let set: Result<(), _> = redis::cmd("SET")
            .arg(self.key(KNOWN, subject))
            .arg(1)
            .arg("EX")
            .arg(KNOWN_FOR.as_secs())
            .query_async(&mut self.redis.clone())
            .await;
        if let Err(error) = set {
            tracing::warn!(%error, "could not remember where an account signed in from");
        }
    }

    /// Whether `subject` (a name from an address) signed in within [`KNOWN_FOR`].
    pub async fn knows(&self, subject: &Subject) -> bool {
        self.settings.enabled() && self.exists(&self.key(KNOWN, subject)).await
    }

    async fn exists(&self, key: &str) -> bool {
        let exists: Result<bool, _> = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut self.redis.clone())
            .await;
        exists.unwrap_or_else(|error| {
            tracing::warn!(%error, "rate limits unread");
            false
        })
    }

    fn key(&self, kind: &str, subject: &Subject) -> String {
        format!(
            "{}{kind}:{}",
            self.settings.rate_limit_key_prefix, subject.0
        )
    }

    async fn ask(&self, limit: Limit, subject: &Subject, mode: &str) -> Result<(), RateLimitError> {
        if !self.settings.enabled() {
            return Ok(());
        }
        let rate = self.settings.rate(limit);
        let key = self.key(limit.name(), subject);
        let wait: Result<u64, _> = GCRA_SCRIPT
            .key(&key)
            .arg(rate.interval().as_millis().max(1) as u64)
            .arg(rate.count)
            .arg(mode)
            .invoke_async(&mut self.redis.clone())
            .await;
        match wait {
            Ok(0) => Ok(()),
            Ok(ms) => {
                metrics::counter!(infra::metrics::RATE_LIMIT_REFUSALS, "limit" => limit.name())
                    .increment(1);
                Err(RateLimitError::Limited {
                    retry_after: Duration::from_millis(ms),
                })
            }
            Err(error) if limit.fails_closed() => {
                tracing::error!(%error, limit = limit.name(), "rate limits uncounted: refusing");
                Err(RateLimitError::Uncounted(error))
            }
            Err(error) => {
                tracing::warn!(%error, limit = limit.name(), "rate limits uncounted: allowing");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let one = Subject::address("2001:db8:1:2:aaaa::1".parse().unwrap());
        let neighbour = Subject::address("2001:db8:1:2:ffff::9".parse().unwrap());
        let elsewhere = Subject::address("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(one.0, neighbour.0);
        assert_ne!(one.0, elsewhere.0);
        assert_eq!(
            Subject::address("203.0.113.4".parse().unwrap()).0,
            "203.0.113.4"
        );
        let name = UserName::parse("ann").unwrap();
        assert_eq!(
            Subject::name_from(&name, "2001:db8:1:2::7".parse().unwrap()).0,
            "2001:db8:1:2::/64|ann"
        );
    }

    #[test]
    fn rates_are_read_as_written() {
        assert_eq!(
            "20/10m".parse(),
            Ok(Rate::new(20, Duration::from_secs(600)))
        );
        assert_eq!("5/30".parse(), Ok(Rate::new(5, Duration::from_secs(30))));
        assert_eq!(
            " 100 / 1h ".parse(),
            Ok(Rate::new(100, Duration::from_secs(3600)))
        );
        for bad in ["", "20", "0/1m", "1/0s", "x/1m", "1/1d", "-1/1m"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            Rate::new(20, Duration::from_secs(600)).interval(),
            Duration::from_secs(30)
        );
    }
}
