//! Graceful shutdown of a listener's connections: when asked, each HTTP
//! connection finishes the requests it has and closes (hyper's
//! `graceful_shutdown`), and [`Graceful::shutdown`] returns once every
//! connection handed a [`Watcher`] is gone.
//!
//! The same contract as hyper-util's `GracefulShutdown`, for less per poll:
//! its watcher polls a `watch::Receiver::changed()` future at every poll of
//! the connection (twice per request), taking the channel's waiter lock each
//! time. Here a connection registers its task's waker once, under a lock
//! taken only then and when it ends, and reads one atomic per poll.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use tokio::sync::Notify;

/// The shutdown signal of one listener's connections.
#[derive(Debug)]
pub(crate) struct Graceful {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    state: Mutex<State>,
    /// Notified when the last watcher is dropped.
    all_gone: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Every live watcher, with the waker of the task watching its
    /// connection once it has been polled.
    watchers: HashMap<u64, Option<Waker>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Graceful {
    pub(crate) fn new() -> Self {
        Graceful {
            shared: Arc::default(),
        }
    }

    /// A watcher for one connection: shutdown waits until it is dropped.
    pub(crate) fn watcher(&self) -> Watcher {
        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.watchers.insert(id, None);
        Watcher {
            shared: self.shared.clone(),
            id,
        }
    }

    /// Asks every watched connection to shut down gracefully, and returns
    /// once every watcher is gone.
    pub(crate) async fn shutdown(self) {
        self.begin();
        loop {
            let gone = self.shared.all_gone.notified();
            tokio::pin!(gone);
            // Registered before the check, so a last drop in between is seen.
            gone.as_mut().enable();
            if self.shared.lock().watchers.is_empty() {
                return;
            }
            gone.await;
        }
    }
}

impl Graceful {
    /// Tells every watched connection to shut down.
    fn begin(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self
            .shared
            .lock()
            .watchers
            .values()
            .flatten()
            .cloned()
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Dropped without [`shutdown`](Graceful::shutdown) (its task cancelled),
/// the connections are still asked to shut down, as hyper-util's are.
impl Drop for Graceful {
    fn drop(&mut self) {
        self.begin();
    }
}

/// One connection's hold on its listener's shutdown.
#[derive(Debug)]
pub(crate) struct Watcher {
    shared: Arc<Shared>,
    id: u64,
}

impl Watcher {
    /// Drives `conn`, asking it to shut down gracefully when the listener
    /// stops.
    pub(crate) fn watch<C: GracefulConnection>(self, conn: C) -> Watched<C> {
        self.watch_with(conn, C::graceful_shutdown)
    }

    /// Drives `conn`, calling `shutdown` on it when the listener stops.
    fn watch_with<C>(self, conn: C, shutdown: fn(Pin<&mut C>)) -> Watched<C> {
        Watched {
            conn,
            shutdown,
            watcher: self,
            waker: None,
            asked: false,
        }
    }

    /// Registers (or replaces) the waker to wake on shutdown; whether the
    /// shutdown has begun.
    fn register(&self, waker: &Waker) -> bool {
        self.shared
            .lock()
            .watchers
            .insert(self.id, Some(waker.clone()));
        self.shared.stopping.load(Ordering::SeqCst)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.watchers.remove(&self.id);
        if state.watchers.is_empty() {
            drop(state);
            self.shared.all_gone.notify_waiters();
        }
    }
}

pin_project! {
    /// A connection driven under a [`Watcher`].
    pub(crate) struct Watched<C> {
        #[pin]
        conn: C,
        shutdown: fn(Pin<&mut C>),
        watcher: Watcher,
        // The waker registered with the listener.
        waker: Option<Waker>,
        // Whether the connection was asked to shut down.
        asked: bool,
    }
}

impl<C: Future> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.asked {
            // Registered once per task: the lock is taken again only if the
            // connection moves to another task.
            let stopping = match this.waker {
                Some(w) if w.will_wake(cx.waker()) => {
                    this.watcher.shared.stopping.load(Ordering::SeqCst)
                }
                _ => {
                    *this.waker = Some(cx.waker().clone());
                    this.watcher.register(cx.waker())
                }
            };
            if stopping {
                *this.asked = true;
                (this.shutdown)(this.conn.as_mut());
            }
        }
        this.conn.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connection that ends only once asked to shut down.
    #[derive(Default)]
    struct Conn {
        asked: bool,
    }

    impl Future for Conn {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.asked {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    fn ask(mut conn: Pin<&mut Conn>) {
        conn.asked = true;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_asks_every_watched_connection_and_waits_for_all_watchers() {
        let graceful = Graceful::new();
        let watched: Vec<_> = (0..3)
            .map(|_| {
                let conn = graceful.watcher().watch_with(Conn::default(), ask);
                tokio::spawn(conn)
            })
            .collect();
        // A watcher never used to watch anything (an opaque TCP connection)
        // is waited for too.
        let idle = graceful.watcher();
        tokio::task::yield_now().await;

        let shutdown = tokio::spawn(graceful.shutdown());
        for task in watched {
            tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .expect("each connection was asked and ended")
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!shutdown.is_finished(), "waits for the last watcher");
        drop(idle);
        tokio::time::timeout(Duration::from_secs(1), shutdown)
            .await
            .expect("returns once every watcher is gone")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_signal_asks_the_connections_too() {
        let graceful = Graceful::new();
        let conn = tokio::spawn(graceful.watcher().watch_with(Conn::default(), ask));
        tokio::task::yield_now().await;
        drop(graceful);
        tokio::time::timeout(Duration::from_secs(1), conn)
            .await
            .expect("asked and ended")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_watched_after_shutdown_began_is_asked_at_once() {
        let graceful = Graceful::new();
        let late = graceful.watcher();
        let shutdown = tokio::spawn(graceful.shutdown());
        tokio::task::yield_now().await;
        late.watch_with(Conn::default(), ask).await;
        shutdown.await.unwrap();
    }
}
