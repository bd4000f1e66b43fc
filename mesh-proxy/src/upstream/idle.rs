//! The connections a [`Pool`](super::Pool) keeps between requests: the
//! HTTP/1.1 connections waiting idle (newest last, reused first), and the one
//! shared HTTP/2 connection.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use tokio::time::Instant;

use crate::body::Body;

/// An HTTP/1.1 connection: one request at a time.
pub(super) struct Http1Conn {
    pub(super) tx: http1::SendRequest<Body>,
}

/// The shared HTTP/2 connection.
struct Http2Conn {
    tx: http2::SendRequest<Body>,
    /// When a request last took it: idle since then.
    last_used: Instant,
}

/// An HTTP/1.1 connection in the idle list, since when.
struct Idle {
    conn: Http1Conn,
    since: Instant,
}

#[derive(Default)]
struct State {
    /// Oldest first: connections are pushed as they become idle.
    idle: Vec<Idle>,
    shared: Option<Http2Conn>,
    /// Whether a reaper task is running.
    reaping: bool,
}

/// A pool's connections, shared with the response bodies that give an
/// HTTP/1.1 connection back when they end.
pub(super) struct Connections {
    /// Connections idle this long are closed rather than reused.
    timeout: Duration,
    state: Mutex<State>,
}

impl Connections {
    pub(super) fn new(timeout: Duration) -> Self {
        Connections {
            timeout,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared HTTP/2 connection, if it is open and has not been idle
    /// past the timeout, else the newest idle HTTP/1.1 connection ready for
    /// a request. Closed and expired connections met on the way are dropped
    /// (which closes them).
    pub(super) fn checkout(&self) -> Option<Checkout> {
        let mut state = self.lock();
        if let Some(tx) = self.take_shared(&mut state) {
            return Some(Checkout::Http2(tx));
        }
        while let Some(idle) = state.idle.pop() {
            if idle.since.elapsed() >= self.timeout {
                // The rest are older still.
                state.idle.clear();
                return None;
            }
            if idle.conn.tx.is_ready() {
                return Some(Checkout::Http1(idle.conn));
            }
        }
        None
    }

    /// The shared HTTP/2 connection, if it is open and has not been idle
    /// past the timeout (what [`checkout`](Self::checkout) would give, without
    /// taking an idle HTTP/1.1 connection).
    pub(super) fn shared_http2(&self) -> Option<http2::SendRequest<Body>> {
        self.take_shared(&mut self.lock())
    }

    /// A handle on the shared HTTP/2 connection if it is usable (open, not
    /// idle past the timeout), marked used now; else it is dropped.
    fn take_shared(&self, state: &mut State) -> Option<http2::SendRequest<Body>> {
        let shared = state.shared.as_mut()?;
        let now = Instant::now();
        if !shared.tx.is_closed() && now.duration_since(shared.last_used) < self.timeout {
            shared.last_used = now;
            return Some(shared.tx.clone());
        }
        state.shared = None;
        None
    }

    /// Drops the idle connections expired at `now` (the oldest come first).
    fn drop_expired(&self, state: &mut State, now: Instant) {
        let expired = state
            .idle
            .iter()
            .take_while(|idle| now.duration_since(idle.since) >= self.timeout)
            .count();
        state.idle.drain(..expired);
    }

    /// Keeps an HTTP/1.1 connection ready for a request for the next one;
    /// drops the idle connections that have expired meanwhile.
    pub(super) fn put(self: &Arc<Self>, conn: Http1Conn) {
        let now = Instant::now();
        let mut state = self.lock();
        self.drop_expired(&mut state, now);
        state.idle.push(Idle { conn, since: now });
        self.reap_later(&mut state);
    }

    /// Shares `tx` as the pool's HTTP/2 connection unless an open one is
    /// shared already.
    pub(super) fn share(self: &Arc<Self>, tx: &http2::SendRequest<Body>) {
        let mut state = self.lock();
        if state.shared.as_ref().is_some_and(|s| !s.tx.is_closed()) {
            return;
        }
        state.shared = Some(Http2Conn {
            tx: tx.clone(),
            last_used: Instant::now(),
        });
        self.reap_later(&mut state);
    }

    /// Starts the reaper unless one runs: a task that closes connections as
    /// they expire, so that an idle connection does not keep its socket and
    /// its `maxConnections` slot until the pool is next used, and an unused
    /// pool ends up empty. It holds the pool weakly, and stops when no
    /// connection is kept (the next one kept starts it again).
    fn reap_later(self: &Arc<Self>, state: &mut State) {
        if state.reaping || Instant::now().checked_add(self.timeout).is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        state.reaping = true;
        // Dropped unfinished (its runtime shutting down, even before its
        // first poll), the reaper says so, so that a pool used on another
        // runtime starts another.
        let mut reaping = Reaping {
            conns: Arc::downgrade(self),
            stopped: false,
        };
        runtime.spawn(async move {
            loop {
                let next = match reaping.conns.upgrade() {
                    Some(conns) => conns.expire(),
                    None => return,
                };
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => {
                        reaping.stop();
                        return;
                    }
                }
            }
        });
    }

    /// Drops the expired connections (which closes them). Returns when the
    /// next one expires, or `None` when none is kept: the reaper stops.
    fn expire(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        self.drop_expired(&mut state, now);
        if state
            .shared
            .as_ref()
            .is_some_and(|s| s.tx.is_closed() || now.duration_since(s.last_used) >= self.timeout)
        {
            state.shared = None;
        }
        let oldest = state.idle.first().map(|idle| idle.since);
        let shared = state.shared.as_ref().map(|s| s.last_used);
        let next = match (oldest, shared) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .and_then(|since| since.checked_add(self.timeout));
        if next.is_none() {
            state.reaping = false;
        }
        next
    }

    /// Whether any connection is kept.
    pub(super) fn is_empty(&self) -> bool {
        let state = self.lock();
        state.idle.is_empty() && state.shared.is_none()
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Connections")
            .field("timeout", &self.timeout)
            .field("idle", &state.idle.len())
            .field("shared", &state.shared.is_some())
            .finish()
    }
}

/// A running reaper: clears [`State::reaping`] if dropped before it
/// stopped on its own (`expire` clears it then).
struct Reaping {
    conns: Weak<Connections>,
    stopped: bool,
}

impl Reaping {
    /// The reaper stopped on its own.
    fn stop(&mut self) {
        self.stopped = true;
    }
}

impl Drop for Reaping {
    fn drop(&mut self) {
        if !self.stopped
            && let Some(conns) = self.conns.upgrade()
        {
            conns.lock().reaping = false;
        }
    }
}

/// A connection taken from the pool for one request.
pub(super) enum Checkout {
    Http1(Http1Conn),
    Http2(http2::SendRequest<Body>),
}
