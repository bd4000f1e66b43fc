//! A set of endpoints changed at run time.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use tokio::sync::watch;
use tower::discover::Change;

use super::EndpointChange;
use crate::endpoint::Endpoint;

type Map = BTreeMap<SocketAddr, Endpoint>;

/// A handle to a set of endpoints that changes at run time.
///
/// Clones share the set. Each stream from [`discover`](Self::discover) first
/// yields the current endpoints, then every change; bursts of changes made
/// between two polls are coalesced into the difference (an endpoint added
/// and removed again in between is never seen). Updates are off the request
/// path: the set is copied on write.
///
/// ```
/// use mesh_core::{Endpoint, discover::EndpointSet};
///
/// let set = EndpointSet::new();
/// let a = Endpoint::new("127.0.0.1:8001".parse().unwrap());
/// set.insert(a.clone());
/// set.replace([a.clone(), Endpoint::new("127.0.0.1:8002".parse().unwrap())]);
/// assert_eq!(set.len(), 2);
/// set.remove(a.addr());
/// assert_eq!(set.snapshot()[0].addr().port(), 8002);
/// ```
#[derive(Clone)]
pub struct EndpointSet {
    tx: Arc<watch::Sender<Arc<Map>>>,
}

impl EndpointSet {
    /// An empty set.
    pub fn new() -> Self {
        EndpointSet {
            tx: Arc::new(watch::Sender::new(Arc::default())),
        }
    }

    /// A set holding these endpoints.
    pub fn from_endpoints(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        let set = Self::new();
        set.replace(endpoints);
        set
    }

    fn update(&self, f: impl FnOnce(&mut Map) -> bool) {
        self.tx.send_if_modified(|map| f(Arc::make_mut(map)));
    }

    /// Adds an endpoint, or replaces the one at the same address.
    pub fn insert(&self, endpoint: Endpoint) {
        self.update(|map| {
            map.insert(endpoint.addr(), endpoint.clone()).as_ref() != Some(&endpoint)
        });
    }

    /// Removes the endpoint at `addr`; returns whether there was one.
    pub fn remove(&self, addr: SocketAddr) -> bool {
        let mut removed = false;
        self.update(|map| {
            removed = map.remove(&addr).is_some();
            removed
        });
        removed
    }

    /// Replaces the whole set (what a DNS answer or a reloaded file gives).
    pub fn replace(&self, endpoints: impl IntoIterator<Item = Endpoint>) {
        let new: Map = endpoints.into_iter().map(|ep| (ep.addr(), ep)).collect();
        self.tx.send_if_modified(|map| {
            if **map == new {
                return false;
            }
            *map = Arc::new(new);
            true
        });
    }

    /// The endpoints now in the set, ordered by address.
    pub fn snapshot(&self) -> Vec<Endpoint> {
        self.tx.borrow().values().cloned().collect()
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.tx.borrow().len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.tx.borrow().is_empty()
    }

    /// A stream of changes: the current endpoints, then every change. It ends
    /// when every handle to the set is dropped.
    pub fn discover(&self) -> DynamicEndpoints {
        DynamicEndpoints {
            rx: Some(self.tx.subscribe()),
            changed: None,
            seen: Arc::default(),
            queue: VecDeque::new(),
            first: true,
        }
    }
}

impl Default for EndpointSet {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.tx.borrow().values()).finish()
    }
}

type Changed = Pin<Box<dyn Future<Output = (bool, watch::Receiver<Arc<Map>>)> + Send>>;

/// The stream of changes to an [`EndpointSet`]; a [`Discover`](tower::discover::Discover).
pub struct DynamicEndpoints {
    rx: Option<watch::Receiver<Arc<Map>>>,
    changed: Option<Changed>,
    seen: Arc<Map>,
    queue: VecDeque<EndpointChange>,
    first: bool,
}

impl DynamicEndpoints {
    fn diff(&mut self, new: Arc<Map>) {
        for (addr, ep) in new.iter() {
            if self.seen.get(addr) != Some(ep) {
                self.queue.push_back(Change::Insert(*addr, ep.clone()));
            }
        }
        for addr in self.seen.keys() {
            if !new.contains_key(addr) {
                self.queue.push_back(Change::Remove(*addr));
            }
        }
        self.seen = new;
    }
}

impl Stream for DynamicEndpoints {
    type Item = Result<EndpointChange, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(change) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            if this.first {
                this.first = false;
                if let Some(rx) = this.rx.as_mut() {
                    let current = rx.borrow_and_update().clone();
                    this.diff(current);
                }
                continue;
            }
            if this.changed.is_none() {
                let Some(mut rx) = this.rx.take() else {
                    return Poll::Ready(None);
                };
                this.changed = Some(Box::pin(async move {
                    let open = rx.changed().await.is_ok();
                    (open, rx)
                }));
            }
            let Some(changed) = this.changed.as_mut() else {
                return Poll::Ready(None);
            };
            let (open, mut rx) = ready!(changed.as_mut().poll(cx));
            this.changed = None;
            if !open {
                return Poll::Ready(None);
            }
            let current = rx.borrow_and_update().clone();
            this.rx = Some(rx);
            this.diff(current);
        }
    }
}

impl fmt::Debug for DynamicEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicEndpoints")
            .field("seen", &self.seen.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{FutureExt, StreamExt};

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(([127, 0, 0, 1], port).into())
    }

    async fn next(s: &mut DynamicEndpoints) -> EndpointChange {
        match s.next().await {
            Some(Ok(c)) => c,
            other => panic!("stream ended: {other:?}"),
        }
    }

    fn is_insert(c: &EndpointChange, port: u16) -> bool {
        matches!(c, Change::Insert(a, _) if a.port() == port)
    }

    #[tokio::test]
    async fn current_endpoints_then_changes() {
        let set = EndpointSet::from_endpoints([ep(1), ep(2)]);
        let mut s = set.discover();
        assert!(is_insert(&next(&mut s).await, 1));
        assert!(is_insert(&next(&mut s).await, 2));
        assert!(s.next().now_or_never().is_none());

        set.insert(ep(3));
        assert!(is_insert(&next(&mut s).await, 3));
        set.remove(ep(1).addr());
        assert!(matches!(next(&mut s).await, Change::Remove(a) if a.port() == 1));
        // A metadata change re-inserts.
        set.insert(ep(2).with_weight(5));
        match next(&mut s).await {
            Change::Insert(_, e) => assert_eq!(e.weight().get(), 5),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bursts_coalesce_and_no_op_updates_are_silent() {
        let set = EndpointSet::new();
        let mut s = set.discover();
        assert!(s.next().now_or_never().is_none());
        set.insert(ep(1));
        set.remove(ep(1).addr());
        set.insert(ep(2));
        set.insert(ep(2)); // no-op
        assert!(is_insert(&next(&mut s).await, 2));
        assert!(
            s.next().now_or_never().is_none(),
            "endpoint 1 came and went unseen"
        );
    }

    #[tokio::test]
    async fn every_subscriber_sees_changes_and_streams_end_with_the_set() {
        let set = EndpointSet::new();
        let mut a = set.discover();
        let mut b = set.discover();
        set.replace([ep(7)]);
        assert!(is_insert(&next(&mut a).await, 7));
        assert!(is_insert(&next(&mut b).await, 7));
        drop(set);
        assert!(a.next().await.is_none());
    }
}
