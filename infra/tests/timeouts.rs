//! A Postgres or Redis that is slow or gone is met with a quick refusal, never a hang: against
//! the real servers. Every call under test is bounded by [`BOUND`], well above the stores'
//! own 2 s, so that a regression fails the test rather than hangs it; no test asserts how
//! quick the refusal was (2 shared cores make timings flaky), only that it came.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{PoolError, TimeoutType};
use infra::event_store::EventStore;
use infra::settings::{expose, secret, RedisSettings};
use infra::testing::TestSettings;
use redis::AsyncCommands;
use sqlx::{Connection, Executor, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

const BOUND: Duration = Duration::from_secs(5);

/// Longer than any request timeout of the stores (2 s): what waits this long and still
/// succeeds was not given one.
const LONGER_THAN_A_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The query API's pool over the read models, migrated first as the projector does.
async fn request_pool(settings: &TestSettings) -> deadpool_postgres::Pool {
    infra::read_store::migrate(expose(&settings.read_store.read_database_url))
        .await
        .unwrap();
    infra::read_store::connect(&settings.read_store)
        .await
        .unwrap()
}

async fn bounded<T>(what: &str, call: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {BOUND:?} instead of being refused"))
}

/// A connection of its own to `url`, holding `table` locked until it is committed.
async fn lock_table(url: &str, table: &str) -> PgConnection {
    let mut connection = PgConnection::connect(url).await.unwrap();
    connection
        .execute(format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE").as_str())
        .await
        .unwrap();
    connection
}

/// Waits until a statement of another connection to `url` waits for a lock.
async fn until_a_statement_waits_for_a_lock(url: &str) {
    let mut observer = PgConnection::connect(url).await.unwrap();
    bounded("waiting for the blocked statement", async {
        loop {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT FROM pg_stat_activity
                                 WHERE datname = current_database() AND wait_event_type = 'Lock')",
            )
            .fetch_one(&mut observer)
            .await
            .unwrap();
            if waiting {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_blocked_by_a_lock_is_cancelled() {
    let settings = TestSettings::new().await;
    let url = expose(&settings.read_store.read_database_url);
    let pool = request_pool(&settings).await;
    let _locker = lock_table(url, "videos").await;

    let client = bounded("getting a connection", pool.get()).await.unwrap();
    let error = bounded(
        "a read of a locked table",
        client.query("SELECT id FROM videos", &[]),
    )
    .await
    .expect_err("the read is cancelled");
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");

    // Only the statement was cancelled: the connection serves the next one.
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_read_waits_for_a_lock_as_long_as_it_takes() {
    let settings = TestSettings::new().await;
    let url = expose(&settings.read_store.read_database_url);
    let pool = infra::read_store::connect_for_batches(&settings.read_store)
        .await
        .unwrap();
    let mut locker = lock_table(url, "videos").await;

    let read = tokio::spawn(async move {
        let client = pool.get().await.unwrap();
        client.query("SELECT id FROM videos", &[]).await
    });
    until_a_statement_waits_for_a_lock(url).await;
    tokio::time::sleep(LONGER_THAN_A_REQUEST_TIMEOUT).await;
    locker.execute("COMMIT").await.unwrap();

    let rows = bounded("the read once the lock is released", read)
        .await
        .unwrap()
        .expect("the read waited for the lock");
    assert!(rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_read_pool_refuses_the_next_request() {
    let settings = TestSettings::new().await;
    let pool = request_pool(&settings).await;
    let mut held = Vec::new();
    for _ in 0..settings.read_store.read_database_pool_size {
        held.push(pool.get().await.unwrap());
    }

    let error = bounded("getting a connection from a full pool", pool.get())
        .await
        .expect_err("no connection is free");
    assert!(
        matches!(error, PoolError::Timeout(TimeoutType::Wait)),
        "{error:?}"
    );

    // A connection given back serves the next request.
    held.pop();
    let client = bounded("getting the connection given back", pool.get())
        .await
        .unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_closed_by_postgres_are_replaced_before_use() {
    let settings = TestSettings::new().await;
    let url = expose(&settings.read_store.read_database_url);
    let pool = request_pool(&settings).await;
    // Several idle connections in the pool.
    let clients: Vec<_> = futures::future::join_all((0..4).map(|_| pool.get()))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(clients);

    // What a Postgres restart does to them. Right after it, the client has not yet seen
    // every connection closed: Fast recycling hands such a one out (about one request in five
    // failed so, measured), Verified checks it first and opens another.
    let mut admin = PgConnection::connect(url).await.unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();

    for _ in 0..4 {
        let client = bounded("getting a connection", pool.get()).await.unwrap();
        let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_by_a_lock_is_cancelled() {
    let settings = TestSettings::new().await;
    let url = expose(&settings.event_store.database_url);
    let store = EventStore::connect(&settings.event_store).await.unwrap();
    let _locker = lock_table(url, "publish_clock").await;

    let error = bounded(
        "a write to a locked table",
        store.next_publish_time(1_700_000_000_000),
    )
    .await
    .expect_err("the write is cancelled");
    let code = error.as_database_error().and_then(|error| error.code());
    assert_eq!(
        code.as_deref(),
        Some(SqlState::QUERY_CANCELED.code()),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_event_store_pool_refuses_the_next_command() {
    let settings = TestSettings::new().await;
    let store = EventStore::connect(&settings.event_store).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..settings.event_store.database_pool_size {
        held.push(store.pool().acquire().await.unwrap());
    }

    let error = bounded("an id from a full pool", store.next_user_id())
        .await
        .expect_err("no connection is free");
    assert!(matches!(error, sqlx::Error::PoolTimedOut), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_not_cut_short_by_the_statement_timeout() {
    let settings = TestSettings::new().await;
    let url = expose(&settings.event_store.database_url).to_owned();
    drop(EventStore::connect(&settings.event_store).await.unwrap());
    // The migrator reads the migrations applied so far: a second command API starting while
    // that table is locked (by a migration under way, say) waits rather than fails.
    let mut locker = lock_table(&url, "_sqlx_migrations").await;
    let starting = tokio::spawn({
        let settings = settings.event_store.clone();
        async move { EventStore::connect(&settings).await.map(drop) }
    });
    until_a_statement_waits_for_a_lock(&url).await;
    tokio::time::sleep(LONGER_THAN_A_REQUEST_TIMEOUT).await;
    locker.execute("COMMIT").await.unwrap();

    bounded("the start once the lock is released", starting)
        .await
        .unwrap()
        .expect("the migrations waited for the lock");
}

/// A Redis that accepts connections and never answers (a stopped process, say).
async fn silent_redis() -> (JoinHandle<()>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (accepting, url)
}

fn redis_at(settings: &TestSettings, url: &str) -> RedisSettings {
    RedisSettings {
        redis_url: secret(url),
        ..settings.redis.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_does_not_answer_is_refused() {
    let settings = TestSettings::new().await;
    let (accepting, url) = silent_redis().await;
    let error = bounded(
        "connecting to a silent Redis",
        infra::redis_store::connect(&redis_at(&settings, &url)),
    )
    .await
    .expect_err("a Redis that does not answer is refused");
    let error = error
        .downcast::<redis::RedisError>()
        .expect("a Redis error");
    assert!(error.is_timeout(), "{error:?}");
    accepting.abort();
}

/// A proxy to the test Redis, to play a Redis that gets stuck ([`RedisProxy::freeze`]: it
/// passes nothing on and keeps its connections open) or goes away ([`RedisProxy::stop`]).
struct RedisProxy {
    url: String,
    port: u16,
    frozen: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<JoinHandle<std::io::Result<()>>>>>,
}

impl RedisProxy {
    /// Listens on `port` (0: any free one).
    async fn start(settings: &TestSettings, port: u16) -> Self {
        let client = redis::Client::open(expose(&settings.redis.redis_url)).unwrap();
        let redis::ConnectionAddr::Tcp(host, redis_port) =
            client.get_connection_info().addr().clone()
        else {
            panic!("the test Redis is reached over TCP");
        };
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let tasks: Arc<Mutex<Vec<_>>> = Arc::default();
        let accepting = tokio::spawn({
            let (frozen, tasks) = (frozen.clone(), tasks.clone());
            async move {
                loop {
                    let (downstream, _) = listener.accept().await?;
                    let upstream = TcpStream::connect((host.as_str(), redis_port)).await?;
                    let (mut from_client, mut to_client) = downstream.into_split();
                    let (mut from_redis, mut to_redis) = upstream.into_split();
                    let replies = tokio::spawn(async move {
                        tokio::io::copy(&mut from_redis, &mut to_client)
                            .await
                            .map(drop)
                    });
                    let frozen = frozen.clone();
                    let requests = tokio::spawn(async move {
                        let mut buffer = vec![0; 64 * 1024];
                        loop {
                            let read = from_client.read(&mut buffer).await?;
                            if read == 0 {
                                return Ok(());
                            }
                            if frozen.load(Ordering::SeqCst) {
                                std::future::pending::<()>().await;
                            }
                            to_redis.write_all(&buffer[..read]).await?;
                        }
                    });
                    tasks.lock().unwrap().extend([replies, requests]);
                }
            }
        });
        tasks.lock().unwrap().push(accepting);
        Self {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            frozen,
            tasks,
        }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Closes every connection, and refuses new ones.
    fn stop(self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_is_refused() {
    let settings = TestSettings::new().await;
    let proxy = RedisProxy::start(&settings, 0).await;
    let mut redis = infra::redis_store::connect(&redis_at(&settings, &proxy.url))
        .await
        .unwrap();
    let ready = infra::redis_store::Keys::new(&settings.redis).ready();
    let answered: Option<String> = redis.get(&ready).await.unwrap();
    assert_eq!(answered, None);

    proxy.freeze();
    let error = bounded(
        "a command to a Redis that stopped answering",
        redis.get::<_, Option<String>>(&ready),
    )
    .await
    .expect_err("the command is refused");
    assert!(error.is_timeout(), "{error:?}");
    proxy.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_went_away_is_refused_at_once_and_used_again_once_back() {
    let settings = TestSettings::new().await;
    let proxy = RedisProxy::start(&settings, 0).await;
    let port = proxy.port;
    let mut redis = infra::redis_store::connect(&redis_at(&settings, &proxy.url))
        .await
        .unwrap();
    let ready = infra::redis_store::Keys::new(&settings.redis).ready();
    redis.get::<_, Option<String>>(&ready).await.unwrap();

    proxy.stop();
    // Each request makes one attempt to reconnect, refused at once; with the manager's
    // default retries and backoff each would wait about 9 s.
    for _ in 0..3 {
        bounded(
            "a command while Redis is away",
            redis.get::<_, Option<String>>(&ready),
        )
        .await
        .expect_err("the command is refused");
    }

    let proxy = RedisProxy::start(&settings, port).await;
    bounded("reconnecting once Redis is back", async {
        while redis.get::<_, Option<String>>(&ready).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    proxy.stop();
}
