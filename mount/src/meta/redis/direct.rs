//! Commands sent straight from a FUSE worker thread over a blocking connection.
//!
//! Through the multiplexed connection, each command goes to a runtime task that writes it
//! and the answer comes back the same way: two thread wake-ups per round trip, which on a
//! 2-core machine cost more than the round trip itself (measured on `stat` of small files:
//! 6.5 context switches and 70 µs of CPU per lookup, the reference 2.8 and 30 µs). A FUSE
//! worker serves one request at a time and may block (`meta::thread_may_block`), so there
//! each `Conn` keeps a plain connection per thread: the worker writes the command and
//! sleeps in `read` until Redis answers. Their transactions likewise take blocking
//! connections from a pool of their own (`Conn::exclusive`).

use super::conn::{
    CONNECT_TIMEOUT, Failure, RESPONSE_TIMEOUT, Req, blocking_query, retire, transient,
};
use ::redis::{Client, Connection, FromRedisValue, RedisError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// This thread's connection per `Conn` id, with the generation it was made in.
    static LINKS: RefCell<HashMap<u64, (u64, Connection)>> = RefCell::new(HashMap::new());
}

pub(super) fn connect(client: &Client) -> ::redis::RedisResult<Connection> {
    let c = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    c.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
    c.set_write_timeout(Some(RESPONSE_TIMEOUT))?;
    Ok(c)
}

/// One attempt of `req` on this thread's connection for `id`, made (again) when missing
/// or older than `generation`. Failures are classified as the async path does, and a
/// transient one retires every connection, so the caller's retry starts afresh.
pub(super) fn attempt<T: FromRedisValue>(
    client: &Client,
    id: u64,
    generation: &AtomicU64,
    req: Req<'_>,
) -> Result<T, Failure> {
    LINKS.with_borrow_mut(|links| {
        let now = generation.load(Ordering::Relaxed);
        if links.get(&id).is_none_or(|(g, _)| *g != now) {
            links.remove(&id);
            let c = connect(client).map_err(|e| {
                if transient(&e) {
                    retire(generation);
                }
                Failure::Connect(e)
            })?;
            links.insert(id, (now, c));
        }
        let Some((_, c)) = links.get_mut(&id) else {
            let none = RedisError::from((::redis::ErrorKind::Client, "no connection"));
            return Err(Failure::Connect(none));
        };
        let r = blocking_query(c, req);
        if let Err(e) = &r
            && transient(e)
        {
            links.remove(&id);
            retire(generation);
        }
        r.map_err(Failure::Command)
    })
}
