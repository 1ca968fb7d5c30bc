//! Redis read models: user and video cards with their counters, the feed timeline, and the
//! like and follow membership sets the personal flags are read from.
//!
//! The projector changes Redis through [`apply_all_once`]: the changes an event makes
//! and the record that the event is applied go in one Lua script, so a redelivered event
//! changes nothing and no counter is ever bumped twice.

use std::num::NonZeroUsize;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::caching::{CacheConfig, CacheMode};
use redis::{CommandCacheConfig, IntoConnectionInfo, ProtocolVersion, Script};

use crate::settings::{expose, RedisSettings};

/// Whether Redis is unwell rather than we at fault: it did not answer (a timeout, a refused or
/// dropped connection), or it answered that it cannot serve now: still loading its data
/// (`LOADING`), running a long script (`BUSY`), refusing writes (`OOM` at `maxmemory` with
/// `noeviction`, `MISCONF` after a failed save, `READONLY` as a replica after a failover,
/// `NOREPLICAS`), or between primaries (`MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`). Such a
/// Redis is treated as away; any other error (`WRONGTYPE`, a script's own) is a fault.
pub fn is_unwell(error: &redis::RedisError) -> bool {
    const UNWELL: [&str; 9] = [
        "LOADING",
        "BUSY",
        "OOM",
        "MISCONF",
        "READONLY",
        "NOREPLICAS",
        "MASTERDOWN",
        "TRYAGAIN",
        "CLUSTERDOWN",
    ];
    // A pipeline's error holds each failed command's: the server's code is theirs.
    let refused = error.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, error)| UNWELL.contains(&error.code()))
    });
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || refused
}

/// How long a request waits for a Redis reply, or for a connection to Redis.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the projector waits for the reply to one of its batches (up to a few hundred
/// scripts, or a thousand commands of a rebuild): there is no client waiting, and a batch
/// that times out is applied again.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection for answering requests. A request waits at most 2 s for a reply; while Redis
/// is away, for one attempt to reconnect, not for the manager's default seven with backoff
/// (6 to 12 s in all): the next request tries again.
pub async fn connect(settings: &RedisSettings) -> anyhow::Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REQUEST_TIMEOUT))
        .set_response_timeout(Some(REQUEST_TIMEOUT))
        .set_number_of_retries(0);
    connect_with(settings, config).await
}

/// How many keys the query API keeps replies of (see [`connect_cached`]): cards of a few
/// hundred bytes (about a KiB each with the cache's own keys), and the feed's newest page.
/// The hot ones are few (a feed page reads about 60); with 65,536 the query API's resident
/// memory peaked at 200 MiB under `make bench`.
const CACHED_KEYS: usize = 16_384;

/// How long a kept reply is served at most. Redis's invalidation normally removes a reply as
/// soon as its key changes; but redis-rs stores a reply after its connection has read what
/// followed it, so a change made just after the read can be missed, and Redis sends one
/// invalidation a key per read: this bounds how long such a reply may be served.
const CACHED_FOR: Duration = Duration::from_secs(1);

/// A connection for the query API's reads, with server-assisted client-side caching of the
/// commands marked [`cached`]: their replies are kept in this process, and Redis tells it
/// (RESP3 `CLIENT TRACKING`) as soon as a key it read changes; the next read of that key goes
/// to Redis again. A reconnection starts a new cache epoch, so nothing kept from before a
/// lost connection is served. Only commands with fixed arguments are marked (a card's
/// `HGETALL`, the feed's newest page): the cache keeps one reply a command a key, and
/// commands whose arguments come from clients (a feed cursor, a page's ids) would grow it
/// without bound.
pub async fn connect_cached(settings: &RedisSettings) -> anyhow::Result<ConnectionManager> {
    let info = expose(&settings.redis_url).into_connection_info()?;
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(resp3))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REQUEST_TIMEOUT))
        .set_response_timeout(Some(REQUEST_TIMEOUT))
        .set_number_of_retries(0)
        .set_cache_config(
            CacheConfig::new()
                .set_mode(CacheMode::OptIn)
                .set_size(NonZeroUsize::new(CACHED_KEYS).expect("the cache holds something"))
                .set_default_client_ttl(CACHED_FOR),
        );
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

/// Marks a command's reply as kept by a [`connect_cached`] connection (other connections
/// ignore the mark).
pub fn cached() -> CommandCacheConfig {
    CommandCacheConfig::new()
}

/// A connection for the projector: its batches may take longer than a request's reply, and it
/// keeps the manager's default retries with backoff while Redis is away.
pub async fn connect_for_batches(settings: &RedisSettings) -> anyhow::Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REQUEST_TIMEOUT))
        .set_response_timeout(Some(BATCH_TIMEOUT));
    connect_with(settings, config).await
}

async fn connect_with(
    settings: &RedisSettings,
    config: ConnectionManagerConfig,
) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(expose(&settings.redis_url))?;
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

/// Every Redis key we use, under `REDIS_KEY_PREFIX`.
///
/// The read models live in a **generation**: a rebuild makes the next one beside the current
/// one, then switches readers and projectors to it at once (`generation`), and the old one is
/// dropped. Generation 0 is the layout from before generations (right under the prefix);
/// generation n > 0 is under `<prefix>g<n>:`. Readers resolve the current generation once per
/// request ([`current`]); projectors' scripts resolve it themselves, atomically with each
/// change, so a projector never needs to know it.
#[derive(Clone, Debug)]
pub struct Keys {
    /// `REDIS_KEY_PREFIX`: where the generation pointer and the rebuild's keys are.
    base: String,
    /// Where this generation's read models are.
    prefix: String,
    generation: u64,
}

impl Keys {
    /// The keys of generation 0; [`current`] tells which generation to read.
    pub fn new(settings: &RedisSettings) -> Self {
        Self::at_generation(&settings.redis_key_prefix, 0)
    }

    fn at_generation(base: &str, generation: u64) -> Self {
        let prefix = match generation {
            0 => base.to_owned(),
            n => format!("{base}g{n}:"),
        };
        Self {
            base: base.to_owned(),
            prefix,
            generation,
        }
    }

    /// The keys of another generation under the same prefix.
    pub fn in_generation(&self, generation: u64) -> Self {
        Self::at_generation(&self.base, generation)
    }

    /// Keys without any prefix, as projections name them: the scripts that apply their
    /// changes add the current generation's.
    pub fn unprefixed() -> Self {
        Self {
            base: String::new(),
            prefix: String::new(),
            generation: 0,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `REDIS_KEY_PREFIX`, which scripts make the current generation's keys from.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Hash: a user's card (`name`, `signature`, `avatar`, `background_image`) and counters
    /// (`follow_count`, `follower_count`, `total_favorited`, `work_count`, `favorite_count`;
    /// a missing one is zero). Without `name` the user is not registered (yet).
    pub fn user(&self, user_id: i64) -> String {
        format!("{}user:{}", self.prefix, user_id)
    }

    /// Hash: a video's card (`author_id`, `title`, `video_key`, `cover_key`, `published_at`)
    /// and counters (`favorite_count`, `comment_count`).
    pub fn video(&self, video_id: i64) -> String {
        format!("{}video:{}", self.prefix, video_id)
    }

    /// Sorted set of every video id, scored by publish time (epoch ms, unique).
    pub fn feed(&self) -> String {
        format!("{}feed", self.prefix)
    }

    /// Set of the ids of the videos a user likes.
    pub fn likes(&self, user_id: i64) -> String {
        format!("{}user:{}:likes", self.prefix, user_id)
    }

    /// Set of the ids of the users a user follows.
    pub fn following(&self, user_id: i64) -> String {
        format!("{}user:{}:following", self.prefix, user_id)
    }

    /// A `SCAN` pattern matching every key under the prefix, of every generation (and
    /// perhaps of another deployment whose prefix begins with this one: see
    /// [`Keys::generation_of`] before deleting what it finds).
    pub fn everything(&self) -> String {
        format!("{}*", glob_escape(&self.base))
    }

    /// The hash, and its field, holding the sequence of the last event of `aggregate`
    /// (`<aggregate type>/<aggregate id>`) applied to these models. The record is compacted
    /// into small hashes of related aggregates (a video's likes, a follower's follows; other
    /// ids by the hundred), which Redis keeps as listpacks while they hold at most
    /// `hash-max-listpack-entries` (128) fields: a fifth of the memory of one big hash's
    /// fields (docs/operations.md). The Lua of [`APPLY_CHANGE`] finds the same slot.
    pub fn applied(&self, aggregate: &str) -> (String, String) {
        let (bucket, field) = match aggregate.rsplit_once(':') {
            Some(split) => split,
            None => {
                let digits = aggregate
                    .bytes()
                    .rev()
                    .take_while(u8::is_ascii_digit)
                    .count()
                    .min(2);
                aggregate.split_at(aggregate.len() - digits)
            }
        };
        (format!("{}applied:{bucket}", self.prefix), field.to_owned())
    }

    /// Hash: the record of applied events as builds before [`Keys::applied`] kept it, one
    /// field an aggregate. Models holding it are rebuilt before any event is applied to them.
    pub fn applied_as_one_hash(&self) -> String {
        format!("{}applied", self.prefix)
    }

    /// Hash: `<topic>/<partition>` to the offset of the last message whose changes (if any)
    /// the models above hold. A batch is applied only on top of everything before it: a
    /// record behind a batch's first message means Redis lost data (restored from an older
    /// snapshot), and the models are not whole any more.
    pub fn offsets(&self) -> String {
        format!("{}offsets", self.prefix)
    }

    /// String: present while the models above are whole, i.e. they hold every event that
    /// `applied` says they do. A Redis that restarted without its data, or one found behind,
    /// has none in its current generation, and no event is applied to it until a new
    /// generation has been built.
    pub fn ready(&self) -> String {
        format!("{}ready", self.prefix)
    }

    /// String: the generation to read (absent: 0).
    pub fn current_generation(&self) -> String {
        format!("{}generation", self.base)
    }

    /// Counter: the last generation number given to a rebuild.
    pub fn last_generation(&self) -> String {
        format!("{}generation:last", self.base)
    }

    /// String: the token of the rebuild under way: projectors make no change meanwhile, and
    /// the new generation is switched to only by the rebuild whose token is still there at its
    /// end (one that lost its data meanwhile, Redis restarted, must not).
    pub fn rebuilding(&self) -> String {
        format!("{}rebuilding", self.base)
    }

    /// String: the generation a replay (`projector rebuild`) is building from the event store.
    /// It is no rebuild's to drop: the replay switches to it, or drops it, itself.
    pub fn replaying(&self) -> String {
        format!("{}replaying", self.base)
    }

    /// String: the token of the replay building this generation, there from its first change
    /// to the switch. Its absence midway means Redis lost its data since the replay began.
    pub fn building(&self) -> String {
        format!("{}building", self.prefix)
    }

    /// Counter: the events a replay has applied to this generation. A replay applies each
    /// event to Redis before its Postgres commit, so it is never below the count Postgres
    /// records, unless Redis lost data since (restored from an older snapshot).
    pub fn replayed(&self) -> String {
        format!("{}replayed", self.prefix)
    }

    /// The generation whose read models `key` (found under [`Keys::everything`]) belongs to;
    /// None for the keys above that are not a generation's, and for keys that are not ours.
    pub fn generation_of(&self, key: &str) -> Option<u64> {
        let rest = key.strip_prefix(self.base.as_str())?;
        if let Some((number, _)) = rest.strip_prefix('g').and_then(|rest| rest.split_once(':')) {
            if let Ok(generation) = number.parse::<u64>() {
                return (generation > 0).then_some(generation);
            }
        }
        let family = rest.split(':').next().unwrap_or_default();
        let whole = ["feed", "applied", "offsets", "ready"];
        let under = ["user", "video", "applied"];
        (whole.contains(&rest) || (under.contains(&family) && rest.len() > family.len()))
            .then_some(0)
    }
}

/// `text` with glob's special characters escaped, for a `SCAN MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The keys of the generation to read now: resolved once per request, so that a request
/// never mixes two generations. Marked [`cached`]: a caching connection keeps the answer
/// until a rebuild switches generations.
pub async fn current(
    redis: &mut ConnectionManager,
    base: &Keys,
) -> Result<Keys, redis::RedisError> {
    let mut get = redis::cmd("GET");
    get.arg(base.current_generation())
        .set_cache_config(cached());
    let generation: Option<u64> = get.query_async(redis).await?;
    Ok(base.in_generation(generation.unwrap_or(0)))
}

/// Lua: the current generation's prefix (KEYS[1] the generation pointer, `base` the prefix),
/// or nil while a rebuild is under way (KEYS[2] its token) or the generation is not whole.
const CURRENT_PREFIX: &str = r"
local function whole_prefix(base)
  if redis.call('EXISTS', KEYS[2]) == 1 then return nil end
  local prefix = base
  local generation = redis.call('GET', KEYS[1])
  if generation and generation ~= '0' then prefix = base .. 'g' .. generation .. ':' end
  if redis.call('EXISTS', prefix .. 'ready') == 0 then return nil end
  return prefix
end
";

/// Lua: applies the operations in `ARGV[first]` to `ARGV[last]` under `prefix` if this event
/// (`sequence`) is the aggregate's next one there; returns 1 if applied, 0 if it was applied
/// before (the aggregate's last applied sequence is at or past it), -1 if an earlier event is
/// missing: the models then lack it, are no longer whole (`ready` removed, as when an offset
/// is found missing), and are rebuilt, rather than have the earlier event skipped for a
/// repeat when it comes (two projectors racing over an aggregate, a topic given more
/// partitions). Each operation is a command name, its argument count, and its arguments, the
/// first of them a key without the generation's prefix.
const APPLY_CHANGE: &str = r"
local function applied_slot(prefix, aggregate)
  local bucket, field = string.match(aggregate, '^(.*):([^:]*)$')
  if not bucket then bucket, field = string.match(aggregate, '^(.-)(%d?%d?)$') end
  return prefix .. 'applied:' .. bucket, field
end

local function apply_change(prefix, aggregate, sequence, first, last)
  local applied, field = applied_slot(prefix, aggregate)
  local done = tonumber(redis.call('HGET', applied, field) or '0')
  sequence = tonumber(sequence)
  if done >= sequence then return 0 end
  if sequence ~= done + 1 then
    redis.call('DEL', prefix .. 'ready')
    return -1
  end
  local i = first
  while i <= last do
    local count = tonumber(ARGV[i + 1])
    redis.call(ARGV[i], prefix .. ARGV[i + 2], unpack(ARGV, i + 3, i + 1 + count))
    i = i + 2 + count
  end
  redis.call('HSET', applied, field, sequence)
  return 1
end
";

/// Lua: applies the events that follow the first argument in order under `prefix`, and
/// returns per event 1 (applied) or 0 (applied before); or `{-1}` as soon as one finds an
/// earlier event of its aggregate missing (the models are not whole). Per event: its
/// aggregate, its sequence, how many arguments its operations take, its operations (see
/// [`APPLY_CHANGE`]).
const APPLY_EVENTS: &str = r"
local function apply_events(prefix)
  local outcomes, i = {}, 2
  while i <= #ARGV do
    local length = tonumber(ARGV[i + 2])
    local outcome = apply_change(prefix, ARGV[i], ARGV[i + 1], i + 3, i + 2 + length)
    if outcome == -1 then return {-1} end
    outcomes[#outcomes + 1] = outcome
    i = i + 3 + length
  end
  return outcomes
end
";

/// Several events' changes (see [`APPLY_EVENTS`]) made in the current generation. Returns
/// `{-1}`, changing nothing, while the read models are not whole (no `ready`) or a rebuild is
/// under way. Keys: the generation pointer, the rebuild's token. Arguments: the base prefix,
/// the events.
const APPLY_ALL: &str = r"
local prefix = whole_prefix(ARGV[1])
if not prefix then return {-1} end
return apply_events(prefix)
";

/// Several events' changes (see [`APPLY_EVENTS`]), in order, made in the generation being
/// built under ARGV[1] by a replay, counted in its `replayed` counter. Returns per event 1
/// (applied) or 0 (applied before); or `{-1}`, changing nothing, if that generation's
/// `building` mark is gone (Redis lost its data since the replay began). Keys: the mark, the
/// counter.
const APPLY_ALL_IN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local outcomes, made = apply_events(ARGV[1]), 0
for _, outcome in ipairs(outcomes) do made = made + outcome end
if made > 0 then redis.call('INCRBY', KEYS[2], made) end
return outcomes
";

/// Whether Redis holds everything through the given offsets: before a batch's changes, every
/// offset before the batch's first message, per partition (its offset record is at least
/// that). If not, Redis lost data (restored from an older snapshot): when told to mark it
/// (ARGV[2] `mark`, not `look`), `ready` is removed, so the batch's changes are not made (they
/// would count from the wrong base) and a new generation is built. Arguments: the prefix, the
/// mode, then (`topic/partition`, the offset that must be held) pairs. A partition Redis has
/// no record of holds nothing (-1). Returns 0 when Redis holds them, 1 when it found it did
/// not, 2 when the models were not whole already (or a rebuild is under way).
const HOLDS_BEFORE: &str = r"
local prefix = whole_prefix(ARGV[1])
if not prefix then return 2 end
for i = 3, #ARGV, 2 do
  local held = tonumber(redis.call('HGET', prefix .. 'offsets', ARGV[i]) or '-1')
  if held < tonumber(ARGV[i + 1]) then
    if ARGV[2] == 'mark' then redis.call('DEL', prefix .. 'ready') end
    return 1
  end
end
return 0
";

/// After a batch's changes: records each partition's last offset (never moving back).
const HELD_THROUGH: &str = r"
local prefix = whole_prefix(ARGV[1])
if not prefix then return 0 end
for i = 2, #ARGV, 2 do
  local held = tonumber(redis.call('HGET', prefix .. 'offsets', ARGV[i]) or '-1')
  if held < tonumber(ARGV[i + 1]) then
    redis.call('HSET', prefix .. 'offsets', ARGV[i], ARGV[i + 1])
  end
end
return 1
";

/// What [`apply_all_once`] did with one event's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOnce {
    Applied,
    /// The event, or a later one of its aggregate, was applied before: nothing changed.
    AppliedBefore,
    /// The read models are not whole (Redis lost its data, or a rebuild is under way):
    /// nothing changed, and the event is to be applied once they have been rebuilt.
    NotReady,
}

/// The Redis changes one event makes.
#[derive(Debug, Default, Clone)]
pub struct Change {
    operations: Vec<(&'static str, Vec<String>)>,
}

impl Change {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    pub fn hset(mut self, key: String, fields: &[(&str, String)]) -> Self {
        let mut args = vec![key];
        for (field, value) in fields {
            args.push((*field).to_owned());
            args.push(value.clone());
        }
        self.operations.push(("HSET", args));
        self
    }

    pub fn hincr(mut self, key: String, field: &str, by: i64) -> Self {
        self.operations
            .push(("HINCRBY", vec![key, field.to_owned(), by.to_string()]));
        self
    }

    pub fn sadd(mut self, key: String, member: i64) -> Self {
        self.operations
            .push(("SADD", vec![key, member.to_string()]));
        self
    }

    pub fn srem(mut self, key: String, member: i64) -> Self {
        self.operations
            .push(("SREM", vec![key, member.to_string()]));
        self
    }

    pub fn zadd(mut self, key: String, score: i64, member: i64) -> Self {
        self.operations
            .push(("ZADD", vec![key, score.to_string(), member.to_string()]));
        self
    }
}

/// A script that resolves the current generation's prefix first.
fn with_current_prefix(body: &str) -> Script {
    Script::new(&format!("{CURRENT_PREFIX}{body}"))
}

static APPLY_ALL_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{CURRENT_PREFIX}{APPLY_CHANGE}{APPLY_EVENTS}{APPLY_ALL}"
    ))
});
static APPLY_ALL_IN_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{APPLY_CHANGE}{APPLY_EVENTS}{APPLY_ALL_IN}")));
static HOLDS_BEFORE_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_current_prefix(HOLDS_BEFORE));
static HELD_THROUGH_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_current_prefix(HELD_THROUGH));

/// A script invocation with the keys every script here takes first.
fn invocation<'s>(script: &'s Script, keys: &Keys) -> redis::ScriptInvocation<'s> {
    let mut invocation = script.key(keys.current_generation());
    invocation.key(keys.rebuilding()).arg(keys.base());
    invocation
}

/// Per partition of a batch: its name in [`Keys::offsets`] (`topic/partition`), and the
/// offsets of the batch's first and last messages there.
pub type PartitionSpan = (String, i64, i64);

/// Runs the changes of several events, `(aggregate, sequence, change)` in order, in one round
/// trip, on the current generation of the read models under `keys`'s prefix: atomically, a
/// few hundred at a time (see [`CHANGES_PER_CALL`]), each only if event `sequence` of its
/// aggregate was not applied before and the read models are whole. The changes name keys
/// without a prefix ([`Keys::unprefixed`]). With the messages they came in, `span`: first
/// checked to follow what Redis holds (see [`HOLDS_BEFORE`]), then recorded.
pub async fn apply_all_once(
    redis: &mut ConnectionManager,
    keys: &Keys,
    span: &[PartitionSpan],
    changes: &[(&str, i64, &Change)],
) -> Result<AppliedOnce, redis::RedisError> {
    if span.is_empty() && changes.is_empty() {
        return Ok(AppliedOnce {
            outcomes: vec![],
            whole: true,
        });
    }
    let script = &*APPLY_ALL_SCRIPT;
    let invocations: Vec<_> = changes
        .chunks(CHANGES_PER_CALL)
        .map(|chunk| {
            let mut invocation = invocation(script, keys);
            push_events(&mut invocation, chunk);
            invocation
        })
        .collect();
    let mut holds_before = invocation(&HOLDS_BEFORE_SCRIPT, keys);
    holds_before.arg("mark");
    let mut held_through = invocation(&HELD_THROUGH_SCRIPT, keys);
    for (partition, first, last) in span {
        holds_before.arg(partition).arg(first - 1);
        held_through.arg(partition).arg(last);
    }
    let mut pipe = redis::pipe();
    // A pipeline does not load a script the server lacks (after a restart, say): load them
    // first, every time; it is cheap.
    pipe.load_script(script).ignore();
    if !span.is_empty() {
        pipe.load_script(&HOLDS_BEFORE_SCRIPT).ignore();
        pipe.load_script(&HELD_THROUGH_SCRIPT).ignore();
        pipe.invoke_script(&holds_before);
    }
    for invocation in &invocations {
        pipe.invoke_script(invocation);
    }
    if !span.is_empty() {
        pipe.invoke_script(&held_through).ignore();
    }
    let replies: Vec<redis::Value> = pipe.query_async(redis).await?;
    let mut replies = replies.into_iter();
    let held_before = if span.is_empty() {
        true
    } else {
        let reply = replies.next().unwrap_or(redis::Value::Nil);
        redis::from_redis_value::<i64>(reply)? == 0
    };
    let mut outcomes = Vec::with_capacity(changes.len());
    for chunk in changes.chunks(CHANGES_PER_CALL) {
        match chunk_outcomes(chunk.len(), replies.next())? {
            Some(made) => outcomes.extend(made),
            None => outcomes.extend(std::iter::repeat_n(ApplyOnce::NotReady, chunk.len())),
        }
    }
    Ok(AppliedOnce {
        whole: held_before && !outcomes.contains(&ApplyOnce::NotReady),
        outcomes,
    })
}

/// Makes the changes of several events, `(aggregate, sequence, change)` in order, in one
/// round trip, in the generation `generation` a replay is building (not the current one): each
/// only if event `sequence` of its aggregate was not applied there before, so a replay that
/// resumes after a crash sends its last changes again without harm. Err if the generation's
/// [`Keys::building`] mark is gone: Redis lost its data since the replay began.
///
/// A script call makes [`CHANGES_PER_CALL`] events' changes at once, atomically: the per-call
/// cost is most of what a small change costs Redis, and no reader waits long behind one.
pub async fn apply_all_once_in(
    redis: &mut ConnectionManager,
    generation: &Keys,
    changes: &[(&str, i64, &Change)],
) -> Result<Vec<ApplyOnce>, GenerationLost> {
    if changes.is_empty() {
        return Ok(vec![]);
    }
    let script = &*APPLY_ALL_IN_SCRIPT;
    let mut pipe = redis::pipe();
    pipe.load_script(script).ignore();
    for chunk in changes.chunks(CHANGES_PER_CALL) {
        let mut invocation = script.key(generation.building());
        invocation
            .key(generation.replayed())
            .arg(&generation.prefix);
        push_events(&mut invocation, chunk);
        pipe.invoke_script(&invocation);
    }
    let replies: Vec<redis::Value> = pipe.query_async(redis).await?;
    let mut replies = replies.into_iter();
    let mut outcomes = Vec::with_capacity(changes.len());
    for chunk in changes.chunks(CHANGES_PER_CALL) {
        outcomes.extend(chunk_outcomes(chunk.len(), replies.next())?.ok_or(GenerationLost::Lost)?);
    }
    Ok(outcomes)
}

/// What one call of a script over [`APPLY_EVENTS`] did with its `events`: None when it made
/// nothing (`{-1}`: the generation not whole, or lost). A reply of another shape is an error,
/// never taken for an outcome.
fn chunk_outcomes(
    events: usize,
    reply: Option<redis::Value>,
) -> Result<Option<Vec<ApplyOnce>>, redis::RedisError> {
    let replies: Vec<i64> = redis::from_redis_value(reply.unwrap_or(redis::Value::Nil))?;
    if replies == [-1] {
        return Ok(None);
    }
    let unexpected = || {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "a script's outcomes do not match its events",
            format!("{events} events, replies {replies:?}"),
        ))
    };
    if replies.len() != events {
        return Err(unexpected());
    }
    replies
        .iter()
        .map(|reply| match reply {
            1 => Ok(ApplyOnce::Applied),
            0 => Ok(ApplyOnce::AppliedBefore),
            _ => Err(unexpected()),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// The arguments of [`APPLY_EVENTS`] for `changes`.
fn push_events(invocation: &mut redis::ScriptInvocation<'_>, changes: &[(&str, i64, &Change)]) {
    for (aggregate, sequence, change) in changes {
        let length: usize = change
            .operations
            .iter()
            .map(|(_, args)| 2 + args.len())
            .sum();
        invocation.arg(*aggregate).arg(*sequence).arg(length);
        for (command, args) in &change.operations {
            invocation.arg(*command).arg(args.len()).arg(args);
        }
    }
}

/// Events whose changes one script call of [`apply_all_once`] or [`apply_all_once_in`]
/// makes: Redis runs nothing else meanwhile (a millisecond or two).
const CHANGES_PER_CALL: usize = 256;

/// Why [`apply_all_once_in`] made nothing.
#[derive(Debug, thiserror::Error)]
pub enum GenerationLost {
    #[error("Redis lost the generation being built (it restarted, or was flushed, since the replay began)")]
    Lost,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// What [`apply_all_once`] did.
#[derive(Debug)]
pub struct AppliedOnce {
    /// Per change.
    pub outcomes: Vec<ApplyOnce>,
    /// False when the read models were not whole (or found not to be: Redis lost data): the
    /// changes marked [`ApplyOnce::NotReady`] are to be made again once they are rebuilt.
    pub whole: bool,
}

/// Whether the current generation is whole and holds everything through `held` (per
/// partition, `topic/partition` and an offset), changing nothing.
pub async fn holds(
    redis: &mut ConnectionManager,
    keys: &Keys,
    held: &[(String, i64)],
) -> Result<bool, redis::RedisError> {
    check_held(redis, keys, held, "look").await
}

/// Whether Redis still holds everything through `held` (per partition, `topic/partition` and
/// an offset): false, and the current generation marked not whole, when it does not (Redis
/// lost data), or when it is not whole already or being rebuilt.
pub async fn holds_through(
    redis: &mut ConnectionManager,
    keys: &Keys,
    held: &[(String, i64)],
) -> Result<bool, redis::RedisError> {
    check_held(redis, keys, held, "mark").await
}

async fn check_held(
    redis: &mut ConnectionManager,
    keys: &Keys,
    held: &[(String, i64)],
    mode: &str,
) -> Result<bool, redis::RedisError> {
    let mut check = invocation(&HOLDS_BEFORE_SCRIPT, keys);
    check.arg(mode);
    for (partition, offset) in held {
        check.arg(partition).arg(offset);
    }
    let behind: i64 = check.invoke_async(redis).await?;
    Ok(behind == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::at_generation("douyin:", 0)
    }

    #[test]
    fn each_generations_read_models_are_told_apart_from_everything_else_under_the_prefix() {
        let keys = keys();
        let third = keys.in_generation(3);
        for key in [third.user(1), third.likes(1), third.feed(), third.ready()] {
            assert_eq!(keys.generation_of(&key), Some(3), "{key}");
        }
        for key in [
            keys.user(1),
            keys.video(2),
            keys.following(1),
            keys.applied("like/7:2").0,
            keys.applied_as_one_hash(),
        ] {
            assert_eq!(keys.generation_of(&key), Some(0), "{key}");
        }
        for key in [
            keys.current_generation(),
            keys.last_generation(),
            keys.rebuilding(),
            "douyin:v2:user:1".to_owned(),
            "douyin:g:user:1".to_owned(),
            "douyin:user".to_owned(),
            "other:user:1".to_owned(),
        ] {
            assert_eq!(keys.generation_of(&key), None, "{key}");
        }
    }

    #[test]
    fn a_redis_that_cannot_serve_now_is_unwell_and_a_wrong_command_is_not() {
        for code in [
            "OOM",
            "MISCONF",
            "BUSY",
            "LOADING",
            "READONLY",
            "MASTERDOWN",
        ] {
            assert!(is_unwell(&parsed_error(code)), "{code}");
        }
        for code in ["WRONGTYPE", "ERR", "NOSCRIPT"] {
            assert!(!is_unwell(&parsed_error(code)), "{code}");
        }
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(is_unwell(&io));
    }

    /// The error a reply `-<code> ...` from the server makes, as the client parses it.
    fn parsed_error(code: &str) -> redis::RedisError {
        let reply = format!("-{code} the server says no\r\n");
        match redis::parse_redis_value(reply.as_bytes()) {
            Ok(redis::Value::ServerError(error)) => error.into(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_record_of_applied_events_is_kept_by_related_aggregates() {
        let keys = keys();
        let slot = |aggregate: &str| {
            let (key, field) = keys.applied(aggregate);
            (key.strip_prefix(keys.base()).unwrap().to_owned(), field)
        };
        assert_eq!(slot("like/7:2"), ("applied:like/7".into(), "2".into()));
        assert_eq!(
            slot("conversation/3:12"),
            ("applied:conversation/3".into(), "12".into())
        );
        assert_eq!(slot("user/12345"), ("applied:user/123".into(), "45".into()));
        assert_eq!(slot("video/5"), ("applied:video/".into(), "5".into()));
        assert_eq!(
            slot("comment/905"),
            ("applied:comment/9".into(), "05".into())
        );
        assert_eq!(slot("odd/x"), ("applied:odd/x".into(), "".into()));
    }

    #[test]
    fn a_prefix_with_glob_characters_matches_only_itself() {
        assert_eq!(Keys::at_generation("a*[b]:", 0).everything(), r"a\*\[b\]:*");
    }
}
