//! Connections to Redis and what happens when it goes away.
//!
//! Single commands share one multiplexed connection; a WATCH transaction needs a connection
//! of its own (WATCH state is per connection, and anyone else's EXEC would clear it), so
//! transactions take one from a small pool. Connections are made lazily and dropped on a
//! connection error; one such error also retires every other connection made before it
//! (a `generation` count), so after a server restart each pooled connection is replaced
//! when next used instead of failing once more.
//!
//! A command that fails because the server is unreachable is retried with backoff for up to
//! `RETRY_BUDGET`, then the caller gets `Unavailable` (EIO). Commands that may have reached
//! the server are retried only when repeating them is harmless.

use super::super::sql::db::{Pool, Pooled};
use crate::meta::url::redact;
use crate::meta::{MetaError, Result};
use ::redis::aio::MultiplexedConnection;
use ::redis::{
    AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisError, RedisResult,
    ScriptInvocation, ServerErrorKind,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one operation keeps retrying an unreachable server before answering EIO.
pub const RETRY_BUDGET: Duration = Duration::from_secs(10);
const TXN_CONNS: usize = 16;

/// A connection and the generation it was made in.
type Made = (u64, MultiplexedConnection);

/// A connection: multiplexed and async, or blocking for threads that may block
/// (see `direct`).
pub enum Link {
    Async(MultiplexedConnection),
    Blocking(::redis::Connection),
}

impl Link {
    pub(super) async fn query<T: FromRedisValue>(&mut self, req: Req<'_>) -> RedisResult<T> {
        match (self, req) {
            (Link::Async(c), Req::Cmd(cmd)) => cmd.query_async(c).await,
            (Link::Async(c), Req::Pipe(p)) => p.query_async(c).await,
            (Link::Async(c), Req::Script(s)) => s.invoke_async(c).await,
            (Link::Blocking(c), req) => blocking_query(c, req),
        }
    }
}

pub(super) fn blocking_query<T: FromRedisValue>(
    c: &mut ::redis::Connection,
    req: Req<'_>,
) -> RedisResult<T> {
    match req {
        Req::Cmd(cmd) => cmd.query(c),
        Req::Pipe(p) => p.query(c),
        Req::Script(s) => s.invoke(c),
    }
}

/// One connection of a transaction pool, used by one transaction at a time.
#[derive(Default)]
pub struct Slot(Option<(u64, Link)>);

pub struct Conn {
    client: ::redis::Client,
    /// Tells this connection's blocking links (`direct`) from other engines' on one thread.
    id: u64,
    /// The META-URL with its password replaced, for every message.
    pub shown: String,
    shared: Mutex<Option<Made>>,
    slots: Pool<Slot>,
    /// Transactions of threads that may block use blocking connections of their own.
    blocking_slots: Pool<Slot>,
    /// Bumped by every connection failure: connections of older generations are replaced.
    generation: Arc<AtomicU64>,
    /// Set while the server is unreachable, so an outage is logged once, not per call.
    down: AtomicBool,
}

/// Where a failure happened: connecting means nothing was sent.
pub(super) enum Failure {
    Connect(RedisError),
    Command(RedisError),
}

/// Errors worth retrying: the server is unreachable, restarting, or still loading its data.
pub fn transient(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
        return true;
    }
    matches!(
        e.kind(),
        ::redis::ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::ClusterDown
        )
    )
}

/// Attempts of one operation: backoff while the server is unreachable, bounded by
/// `RETRY_BUDGET` from the start of the operation, and a bounded number of reruns of a
/// transaction that lost a race.
pub struct Retry {
    started: Instant,
    waits: u32,
    conflicts: u32,
    quick: bool,
}

impl Retry {
    pub fn new() -> Retry {
        Retry {
            started: Instant::now(),
            waits: 0,
            conflicts: 0,
            quick: false,
        }
    }

    /// The first failure of an operation is retried at once, on a new connection: it is
    /// usually a connection the server dropped (restart, idle timeout), not an outage.
    pub fn quick(&mut self) -> bool {
        !std::mem::replace(&mut self.quick, true)
    }

    /// Sleeps before the next attempt (100 ms doubling to 1 s), or says the budget is spent.
    pub async fn wait(&mut self) -> bool {
        if self.started.elapsed() >= RETRY_BUDGET {
            return false;
        }
        self.waits += 1;
        let ms = (50u64 << self.waits.min(5)).min(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        true
    }

    /// A lost optimistic race: try again soon, a bounded number of times (as JuiceFS: 50),
    /// after a short random pause that grows with the attempts.
    pub async fn conflict(&mut self) -> bool {
        self.conflicts += 1;
        if self.conflicts > 50 {
            return false;
        }
        let us = 100 * (nanos_jitter() % (self.conflicts as u64 + 1));
        tokio::time::sleep(Duration::from_micros(us)).await;
        true
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry::new()
    }
}

/// Cheap jitter so that clients racing for one key do not retry in lock step.
fn nanos_jitter() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

impl Conn {
    /// Checks the URL and reaches the server once, so a wrong address fails right away with
    /// one clear line instead of after the retry budget.
    pub async fn connect(url: &str) -> Result<Conn> {
        let shown = redact(url);
        let mut info = ::redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| {
            MetaError::Invalid(format!(
                "META-URL {shown:?} is not a valid Redis address: {e}"
            ))
        })?;
        // As JuiceFS: a password may come from the environment instead of the URL.
        if info.redis_settings().password().is_none()
            && let Ok(pw) = std::env::var("REDIS_PASSWORD")
            && !pw.is_empty()
        {
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        if matches!(info.addr(), ::redis::ConnectionAddr::TcpTls { .. }) {
            // Two TLS backends are linked (ours and the object store's); rustls needs to be
            // told which one to use. Failing means one is installed already: fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = ::redis::Client::open(info).map_err(|e| {
            MetaError::Invalid(format!(
                "META-URL {shown:?} is not a valid Redis address: {e}"
            ))
        })?;
        static IDS: AtomicU64 = AtomicU64::new(0);
        let conn = Conn {
            client,
            id: IDS.fetch_add(1, Ordering::Relaxed),
            shown,
            shared: Mutex::new(None),
            slots: Pool::new((0..TXN_CONNS).map(|_| Slot::default()).collect()),
            blocking_slots: Pool::new((0..TXN_CONNS).map(|_| Slot::default()).collect()),
            generation: Arc::new(AtomicU64::new(0)),
            down: AtomicBool::new(false),
        };
        let mut c = conn.open().await.map_err(|e| conn.unreachable(&e))?;
        let pong: ::redis::RedisResult<String> = ::redis::cmd("PING").query_async(&mut c.1).await;
        pong.map_err(|e| conn.unreachable(&e))?;
        *conn.shared.lock().await = Some(c);
        Ok(conn)
    }

    /// Warns about server settings that can lose or corrupt metadata (as the reference
    /// does at mount): keys evicted under memory pressure, no append-only file.
    pub async fn check_server(&self) {
        let info: Result<String> = self.run(&::redis::cmd("INFO")).await;
        let Ok(info) = info else { return };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if let Some(p) = field("maxmemory_policy")
            && p != "noeviction"
        {
            tracing::warn!(
                "Redis {} has maxmemory-policy {p}: it may evict metadata keys when full; set it to noeviction",
                self.shown
            );
        }
        if field("aof_enabled") == Some("0") {
            tracing::warn!(
                "Redis {} has no append-only file: metadata changed since its last snapshot is lost if it stops uncleanly",
                self.shown
            );
        }
    }

    fn unreachable(&self, e: &RedisError) -> MetaError {
        MetaError::Unavailable(format!(
            "cannot connect to Redis {}: {}",
            self.shown,
            describe(e)
        ))
    }

    /// A new connection, tagged with the current generation.
    async fn open(&self) -> ::redis::RedisResult<Made> {
        let made = self.generation.load(Ordering::Relaxed);
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        Ok((made, c))
    }

    fn current<L>(&self, made: &Option<(u64, L)>) -> bool {
        made.as_ref()
            .is_some_and(|(g, _)| *g == self.generation.load(Ordering::Relaxed))
    }

    /// A new connection for a transaction: blocking on threads that may block.
    async fn open_link(&self, blocking: bool) -> RedisResult<(u64, Link)> {
        if blocking {
            let made = self.generation.load(Ordering::Relaxed);
            Ok((made, Link::Blocking(super::direct::connect(&self.client)?)))
        } else {
            let (made, c) = self.open().await?;
            Ok((made, Link::Async(c)))
        }
    }

    async fn shared_conn(&self) -> std::result::Result<MultiplexedConnection, RedisError> {
        let mut link = self.shared.lock().await;
        if !self.current(&link) {
            *link = Some(self.open().await?);
        }
        match &*link {
            Some((_, c)) => Ok(c.clone()),
            None => Err(RedisError::from((
                ::redis::ErrorKind::Client,
                "no connection",
            ))),
        }
    }

    async fn attempt<T: FromRedisValue>(&self, req: Req<'_>) -> std::result::Result<T, Failure> {
        if crate::meta::thread_may_block() {
            return super::direct::attempt(&self.client, self.id, &self.generation, req);
        }
        let c = self.shared_conn().await.map_err(Failure::Connect)?;
        let r = Link::Async(c).query(req).await;
        if let Err(e) = &r
            && transient(e)
        {
            retire(&self.generation);
        }
        r.map_err(Failure::Command)
    }

    /// Runs a command; on an unreachable server it is retried (so it must be harmless to
    /// repeat: reads, SET, HSET, ZADD...).
    pub async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.run_req(Req::Cmd(cmd), true).await
    }

    /// Runs a command that must not be applied twice (INCRBY, RPUSH...): repeated only
    /// when it certainly did not reach the server.
    pub async fn run_once<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.run_req(Req::Cmd(cmd), false).await
    }

    /// Runs a read-only script (EVALSHA, loading it first if the server lost it).
    pub async fn run_script<T: FromRedisValue>(&self, s: &ScriptInvocation<'_>) -> Result<T> {
        self.run_req(Req::Script(s), true).await
    }

    /// Runs a pipeline of commands that are harmless to repeat.
    pub async fn run_pipe<T: FromRedisValue>(&self, p: &Pipeline) -> Result<T> {
        self.run_req(Req::Pipe(p), true).await
    }

    async fn run_req<T: FromRedisValue>(&self, req: Req<'_>, repeatable: bool) -> Result<T> {
        let mut retry = Retry::new();
        loop {
            match self.attempt(req).await {
                Ok(v) => {
                    self.mark_up();
                    return Ok(v);
                }
                Err(Failure::Connect(e)) if transient(&e) => {
                    self.outage(&describe(&e), &mut retry).await?
                }
                Err(Failure::Command(e)) if transient(&e) && repeatable => {
                    if !retry.quick() {
                        self.outage(&describe(&e), &mut retry).await?
                    }
                }
                Err(Failure::Connect(e)) => return Err(self.unreachable(&e)),
                Err(Failure::Command(e)) => return Err(self.error(&e)),
            }
        }
    }

    /// Logs the start of an outage once and waits for the next attempt, or gives up.
    pub async fn outage(&self, why: &str, retry: &mut Retry) -> Result<()> {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "Redis {} is unreachable ({why}); retrying with backoff for up to {}s",
                self.shown,
                RETRY_BUDGET.as_secs()
            );
        }
        if retry.wait().await {
            return Ok(());
        }
        tracing::error!(
            "Redis {} unreachable for {}s, failing the operation with EIO: {why}",
            self.shown,
            retry.elapsed().as_secs(),
        );
        Err(MetaError::Unavailable(format!(
            "Redis {} is unreachable: {why}",
            self.shown
        )))
    }

    pub fn mark_up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis {} is reachable again", self.shown);
        }
    }

    /// Maps an error of a command that reached the server.
    pub fn error(&self, e: &RedisError) -> MetaError {
        if transient(e) {
            MetaError::Unavailable(format!("Redis {}: {}", self.shown, describe(e)))
        } else {
            MetaError::Db(format!("Redis {}: {}", self.shown, describe(e)))
        }
    }

    /// A pooled connection of its own for one transaction, (re)connected if need be.
    pub async fn exclusive(&self) -> Result<(Pooled<Slot>, Arc<AtomicU64>)> {
        let mut retry = Retry::new();
        let blocking = crate::meta::thread_may_block();
        let pool = if blocking {
            &self.blocking_slots
        } else {
            &self.slots
        };
        loop {
            let mut slot = pool.get().await?;
            if self.current(&slot.0) {
                return Ok((slot, self.generation.clone()));
            }
            match self.open_link(blocking).await {
                Ok(c) => {
                    slot.0 = Some(c);
                    return Ok((slot, self.generation.clone()));
                }
                Err(e) if transient(&e) => {
                    drop(slot);
                    self.outage(&describe(&e), &mut retry).await?
                }
                Err(e) => return Err(self.unreachable(&e)),
            }
        }
    }
}

/// Marks every connection made so far as suspect: each is replaced before its next use.
pub fn retire(generation: &AtomicU64) {
    generation.fetch_add(1, Ordering::Relaxed);
}

impl Slot {
    pub fn conn(&mut self) -> Result<&mut Link> {
        match &mut self.0 {
            Some((_, c)) => Ok(c),
            None => Err(MetaError::Db("transaction connection is closed".into())),
        }
    }
    /// Forgets a connection whose state is unknown (failed mid-transaction).
    pub fn discard(&mut self) {
        self.0 = None;
    }
}

#[derive(Clone, Copy)]
pub(super) enum Req<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a Pipeline),
    Script(&'a ScriptInvocation<'a>),
}

/// The error with its cause, without the URL (which `redis` never includes anyway).
pub fn describe(e: &RedisError) -> String {
    let s = e.to_string();
    match std::error::Error::source(e) {
        Some(src) if !s.contains(&src.to_string()) => format!("{s}: {src}"),
        _ => s,
    }
}
